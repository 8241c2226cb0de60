"""The Triton DSA sparse attention kernel against a float64 oracle: padding anywhere in a row,
a row of one valid slot, a row of padding only. CPU: interpreter (separate combine)."""
import math

import pytest
import torch

from conftest import assert_judged_close, solution_module

NAME = "dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64"


def make_inputs(tokens, pages, device, seed):
    g = torch.Generator().manual_seed(seed)
    q_nope = torch.randn(tokens, 16, 512, generator=g).bfloat16()
    q_pe = torch.randn(tokens, 16, 64, generator=g).bfloat16()
    ckv = torch.randn(pages, 64, 512, generator=g).bfloat16()
    kpe = torch.randn(pages, 64, 64, generator=g).bfloat16()
    idx = torch.stack([torch.randperm(pages * 64, generator=g)[:2048] for _ in range(tokens)]).int()
    idx[torch.rand(tokens, 2048, generator=g) < 0.3] = -1  # padding anywhere in the row
    if tokens > 1:
        idx[1] = -1
        idx[1, 1500] = 7  # one valid slot
    if tokens > 2:
        idx[2] = -1  # nothing to attend to: lse -inf, output 0
    args = [q_nope, q_pe, ckv, kpe, idx, 1 / math.sqrt(192)]
    return [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]


def oracle(q_nope, q_pe, ckv, kpe, idx, sm_scale):
    f = torch.float64
    kc, kp = ckv.reshape(-1, 512).to(f), kpe.reshape(-1, 64).to(f)
    out = torch.zeros(q_nope.shape, dtype=f, device=q_nope.device)
    lse = torch.full(q_nope.shape[:2], float("-inf"), dtype=f, device=q_nope.device)
    for t in range(idx.shape[0]):
        slots = idx[t][idx[t] >= 0].long()
        if slots.numel() == 0:
            continue
        logits = (q_nope[t].to(f) @ kc[slots].t() + q_pe[t].to(f) @ kp[slots].t()) * sm_scale
        lse[t] = torch.logsumexp(logits, dim=1) / math.log(2.0)
        out[t] = torch.softmax(logits, dim=1) @ kc[slots]
    return out, lse


def check(args, config=None):
    tokens = args[0].shape[0]
    out = torch.full((tokens, 16, 512), float("nan"), dtype=torch.bfloat16, device=args[0].device)
    lse = torch.full((tokens, 16), float("nan"), device=args[0].device)
    solution_module(NAME, "triton").launch(*args, out, lse, config=config)
    ref_out, ref_lse = oracle(*args)
    assert_judged_close(out, ref_out, what="output")
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), finite) and (lse[~finite] == float("-inf")).all()
    assert_judged_close(lse[finite], ref_lse[finite], what="lse")
    return out, lse


@pytest.mark.parametrize("tokens,splits,combine", [(3, 64, "separate"), (2, 16, "separate"),
                                                   (3, 1, "fused")])  # fused: counters, combine
def test_attention_small(tokens, splits, combine, device):
    check(make_inputs(tokens, 40, device, seed=tokens), dict(splits=splits, combine=combine))


@pytest.mark.gpu
@pytest.mark.parametrize("tokens", [1, 2, 3, 4, 5, 8, 200])
@pytest.mark.parametrize("combine", ["fused", "separate"])
def test_attention_gpu(tokens, combine):
    args = make_inputs(tokens, 8462, "cuda", seed=tokens)
    mod = solution_module(NAME, "triton")
    cfg = mod.launch_config(tokens, torch.cuda.get_device_properties(0).multi_processor_count)
    if combine == "fused" and cfg["combine"] != "fused":
        pytest.skip("this many tokens uses the separate combine")
    first = check(args, dict(cfg, combine=combine))
    again = check(args, dict(cfg, combine=combine))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
