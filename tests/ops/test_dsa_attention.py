"""The Triton DSA sparse attention kernel against a float64 oracle: padding anywhere in a row,
a row of one valid slot, a row of padding only. CPU: interpreter (separate combine)."""

import pytest
import torch

from fibkit.testing import assert_judged_close, dsa_attention_inputs as make_inputs
from fibkit.testing import dsa_attention_oracle as oracle, solution_module

NAME = "dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64"


def check(args, config=None):
    tokens = args[0].shape[0]
    out = torch.full((tokens, 16, 512), float("nan"), dtype=torch.bfloat16, device=args[0].device)
    lse = torch.full((tokens, 16), float("nan"), device=args[0].device)
    solution_module(NAME, "triton").launch(*args, out, lse, config=config)
    ref_out, ref_lse = oracle(*args)
    assert_judged_close(NAME, out, ref_out, "output")
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), finite) and (lse[~finite] == float("-inf")).all()
    assert_judged_close(NAME, lse[finite], ref_lse[finite], "lse")
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
