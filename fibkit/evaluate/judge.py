"""Judging a solution's outputs against the reference's, rule for rule as the contest's evaluator
(flashinfer-bench main, `bench/evaluators/default.py`, `dsa_sparse_attention.py`,
`dsa_topk_indexer.py`) judges them.

allclose: exact shape and dtype; any inf or NaN in an output fails, even where the reference has
one there; then, in float32, an element passes unless |x - y| > atol and |x - y| / (|y| + 1e-8)
> rtol (so a finite value where the reference is inf passes, as in the contest), and at least
`required_ratio` of the elements must pass. topk_set (the indexer): every returned index is
reachable (its page in that row's block table, its position below seq_len), none repeats, and
the sorted scores at the returned indices match the sorted reference scores, the -inf of shared
padding counting as matched.
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
TIMEOUT = "TIMEOUT"


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


def _first(mask: torch.Tensor) -> tuple:
    return tuple(mask.nonzero()[0].tolist())


def compare(x: torch.Tensor, y: torch.Tensor, atol: float, rtol: float, required_ratio: float,
            name: str = "output", shared_nonfinite_ok: bool = False) -> Verdict:
    """The contest's elementwise rule, in float32 as it computes it. With shared_nonfinite_ok
    (the indexer's sorted scores), a NaN or same-signed inf in both counts as matched and any
    other non-finite element as a mismatch; otherwise a non-finite output fails outright."""
    x, y = x.float(), y.float()
    if x.numel() == 0:
        return Verdict()
    if shared_nonfinite_ok:
        shared = (torch.isnan(x) & torch.isnan(y)) | (
            torch.isinf(x) & torch.isinf(y) & (torch.signbit(x) == torch.signbit(y)))
        finite = torch.isfinite(x) & torch.isfinite(y)
        invalid = ~shared & ~finite
        diff = torch.where(finite, (x - y).abs(), torch.zeros_like(x))
        rel = diff / (y.abs() + 1e-8)
        fails = invalid | (finite & (diff > atol) & (rel > rtol))
        any_invalid = bool(invalid.any())
    else:
        nonfinite = ~torch.isfinite(x)
        if nonfinite.any():
            where = _first(nonfinite)
            bad = float(x[where])
            return Verdict(INCORRECT_NUMERICAL, abs(bad), abs(bad), 0.0,
                           f"{name}: {bad} at {list(where)} (the contest fails any inf or NaN in an output)")
        diff = (x - y).abs()
        rel = diff / (y.abs() + 1e-8)
        fails = (diff > atol) & (rel > rtol)
        any_invalid = False
    ratio = 1.0 - float(fails.sum()) / x.numel()
    max_abs = float("inf") if any_invalid else float(diff.max())
    max_rel = float("inf") if any_invalid else float(rel.max())
    v = Verdict(PASSED, max_abs, max_rel, ratio)
    if ratio < required_ratio:
        where = _first(fails)
        v.status = INCORRECT_NUMERICAL
        v.message = (f"{name}: {ratio:.4%} of elements within tolerance (need {required_ratio:.0%}); "
                     f"max abs error {max_abs:.3g}; first bad at {list(where)}: "
                     f"{x[where].item()} vs {y[where].item()}")
    return v


def judge_allclose(rule: Judge, names: List[str], outs: List[torch.Tensor],
                   refs: List[torch.Tensor]) -> Verdict:
    """Each output the solution gave (all of them, or the leading ones where the rule allows
    fewer) against the reference's."""
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
                   rule.atol, rule.rtol, rule.required_ratio, "sorted scores", shared_nonfinite_ok=True)


def normalize_outputs(result: Any, count: int, rule: Judge) -> List[torch.Tensor]:
    """A value-returning solution's result as a list of outputs, by the contest's rules: a
    tensor (or number) for a one-output definition, else a tuple or list with one element per
    output; where the rule allows (DSA attention), the leading `min_outputs` or more. Raises
    ValueError (the contest's RUNTIME_ERROR) or returns None for a count it judges as
    INCORRECT_SHAPE."""
    if rule.min_outputs is not None:  # the DSA evaluator's flexible normalization
        items = list(result) if isinstance(result, (tuple, list)) else [] if result is None else [result]
        if not rule.min_outputs <= len(items) <= count:
            return None
    elif isinstance(result, (tuple, list)):
        if len(result) != count:
            raise ValueError(f"Tuple/list has {len(result)} elements but {count} outputs expected")
        items = list(result)
    else:
        if count != 1:
            raise ValueError(f"Single value returned but {count} outputs expected")
        items = [result]
    return [v if isinstance(v, torch.Tensor) else torch.tensor(v) for v in items]


def judge(rule: Judge, definition, inputs: List[Any], outs: List[torch.Tensor],
          refs: List[torch.Tensor]) -> Verdict:
    names = list(definition.outputs)
    if rule.kind == "topk_set":
        return judge_topk_set(rule, outs[0], refs[0], dict(zip(definition.inputs, inputs)))
    return judge_allclose(rule, names, outs, refs)
