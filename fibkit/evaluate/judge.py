"""Judging a solution's outputs against the reference's, as the contest does.

allclose: exact shape and dtype, no NaN/inf (where the reference has none at that element),
and an element passes when |x - y| <= atol or |x - y| / |y| <= rtol; at least
`required_ratio` of the elements must pass. topk_set (the indexer): every returned index is
reachable (its page in that row's block table, its position below seq_len), none repeats, and
the sorted scores at the returned indices match the sorted reference scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

import torch

from fibkit.catalog import Judge

PASSED = "PASSED"
INCORRECT_SHAPE = "INCORRECT_SHAPE"
INCORRECT_DTYPE = "INCORRECT_DTYPE"
INCORRECT_NUMERICAL = "INCORRECT_NUMERICAL"
RUNTIME_ERROR = "RUNTIME_ERROR"


@dataclass
class Verdict:
    status: str = PASSED
    max_abs: float = 0.0
    max_rel: float = 0.0
    matched_ratio: float = 1.0
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def merge(self, other: "Verdict") -> "Verdict":
        """Worst of two trials' verdicts (the first failure wins)."""
        if not self.passed:
            return self
        if not other.passed:
            return other
        return Verdict(PASSED, max(self.max_abs, other.max_abs), max(self.max_rel, other.max_rel),
                       min(self.matched_ratio, other.matched_ratio))


def _layout(out: torch.Tensor, ref: torch.Tensor, name: str) -> Optional[Verdict]:
    if tuple(out.shape) != tuple(ref.shape):
        return Verdict(INCORRECT_SHAPE, message=f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}")
    if out.dtype != ref.dtype:
        return Verdict(INCORRECT_DTYPE, message=f"{name}: dtype {out.dtype} != {ref.dtype}")
    return None


def compare(x: torch.Tensor, y: torch.Tensor, atol: float, rtol: float, required_ratio: float,
            name: str = "output") -> Verdict:
    """Elementwise tolerance check. Non-finite values pass only where the reference has the same
    value (an lse of -inf for an all-padding row)."""
    x, y = x.double(), y.double()
    if x.numel() == 0:
        return Verdict()
    same_special = (x == y) | (torch.isnan(x) & torch.isnan(y))
    finite = torch.isfinite(x) & torch.isfinite(y)
    bad_special = ~finite & ~same_special
    diff = torch.where(finite, (x - y).abs(), torch.zeros_like(x))
    rel = diff / y.abs().clamp_min(1e-8)
    fails = bad_special | (finite & (diff > atol) & (rel > rtol))
    ratio = 1.0 - float(fails.sum()) / x.numel()
    max_abs = float("inf") if bad_special.any() else float(diff.max())
    max_rel = float("inf") if bad_special.any() else float(rel.max())
    v = Verdict(PASSED, max_abs, max_rel, ratio)
    if bad_special.any():
        where = bad_special.nonzero()[0].tolist()
        v.status, v.message = INCORRECT_NUMERICAL, f"{name}: non-finite value at {where}: {x[tuple(where)].item()}"
    elif ratio < required_ratio:
        where = fails.nonzero()[0].tolist()
        v.status = INCORRECT_NUMERICAL
        v.message = (f"{name}: {ratio:.4%} of elements within tolerance (need {required_ratio:.0%}); "
                     f"first bad at {where}: {x[tuple(where)].item()} vs {y[tuple(where)].item()}")
    return v


def judge_allclose(rule: Judge, names: List[str], outs: List[torch.Tensor],
                   refs: List[torch.Tensor]) -> Verdict:
    verdict = Verdict()
    for name, out, ref in zip(names, outs, refs):
        bad = _layout(out, ref, name)
        if bad:
            return bad
        verdict = verdict.merge(compare(out, ref, rule.atol, rule.rtol, rule.required_ratio, name))
    return verdict


def indexer_scores(indices: torch.Tensor, q_fp8, k_cache, weights) -> torch.Tensor:
    """Scores [B, N] at global slots `indices` (-1 -> -inf), from the dequantized cache."""
    from fibkit.references.dsa_topk_indexer_fp8_h64_d128_topk2048_ps64 import dequant_k_cache

    keys = dequant_k_cache(k_cache)
    page_size = keys.shape[1]
    safe = indices.long().clamp(min=0).clamp(max=keys.shape[0] * page_size - 1)
    k = keys[safe // page_size, safe % page_size]  # [B, N, 128]
    per_head = torch.relu(torch.einsum("bhd,bnd->bhn", q_fp8.float(), k))
    scores = torch.einsum("bhn,bh->bn", per_head, weights.float())
    return scores.masked_fill(indices < 0, float("-inf"))


def judge_topk_set(rule: Judge, out: torch.Tensor, ref: torch.Tensor, inputs: dict) -> Verdict:
    bad = _layout(out, ref, "topk_indices")
    if bad:
        return bad
    seq_lens, table = inputs["seq_lens"].long(), inputs["block_table"].long()
    num_pages, page_size = inputs["k_index_cache_fp8"].shape[:2]
    valid = out >= 0
    if (out < -1).any():
        row = int((out < -1).any(dim=1).nonzero()[0])
        return Verdict(INCORRECT_NUMERICAL, message=f"row {row}: index below -1 (unwritten?)")
    page = out.long().clamp(min=0) // page_size
    offset = out.long().clamp(min=0) % page_size
    # Reachable: the page sits in this row's block table at a slot whose tokens are < seq_len.
    match = page[:, :, None] == table[:, None, :]  # [B, K, M]
    slot = match.long().argmax(dim=2)
    reachable = match.any(dim=2) & (slot * page_size + offset < seq_lens[:, None])
    unreachable = valid & ~reachable
    if unreachable.any():
        b, j = unreachable.nonzero()[0].tolist()
        return Verdict(INCORRECT_NUMERICAL, message=f"row {b}: index {int(out[b, j])} not reachable")
    srt = out.sort(dim=1).values
    dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
    if dup.any():
        b = int(dup.any(dim=1).nonzero()[0])
        return Verdict(INCORRECT_NUMERICAL, message=f"row {b}: duplicate indices")
    scores = indexer_scores(torch.cat([ref, out], dim=1), inputs["q_index_fp8"],
                            inputs["k_index_cache_fp8"], inputs["weights"])
    ref_s, out_s = scores.split(ref.shape[1], dim=1)
    return compare(out_s.sort(dim=1, descending=True).values,
                   ref_s.sort(dim=1, descending=True).values,
                   rule.atol, rule.rtol, rule.required_ratio, "sorted scores")


def judge(rule: Judge, definition, inputs: List[Any], outs: List[torch.Tensor],
          refs: List[torch.Tensor]) -> Verdict:
    names = list(definition.outputs)
    if rule.kind == "topk_set":
        return judge_topk_set(rule, outs[0], refs[0], dict(zip(definition.inputs, inputs)))
    return judge_allclose(rule, names, outs, refs)
