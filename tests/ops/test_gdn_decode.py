"""The Triton GDN decode kernel against the float64 oracle. On CPU through the interpreter at
small batch sizes; on the GPU from batch 1 to 256."""
import pytest
import torch

from fibkit.testing import assert_judged_close, gdn_decode_inputs, gdn_decode_oracle, solution_module

NAME = "gdn_decode_qk4_v8_d128_k_last"


def run_kernel(args, device, config=None):
    batch = args[0].shape[0]
    out = torch.full((batch, 1, 8, 128), float("nan"), dtype=torch.bfloat16, device=device)
    new_state = torch.full((batch, 8, 128, 128), float("nan"), device=device)  # poisoned
    solution_module(NAME, "triton").launch(*args, out, new_state, config=config)
    return out, new_state


def check(batch, with_state, scale, device, seed, config=None):
    args = gdn_decode_inputs(batch, device, seed, with_state, scale)
    out, new_state = run_kernel(args, device, config)
    ref_out, ref_state = gdn_decode_oracle(*args)
    assert_judged_close(NAME, out, ref_out, "output")
    assert_judged_close(NAME, new_state, ref_state, "new_state")
    # Far inside the contest's tolerance: fp32 state arithmetic, as the definition does.
    assert (new_state.double() - ref_state).abs().max() < 1e-5
    assert (out.double() - ref_out).abs().max() <= 2 ** -7 * ref_out.abs().max()  # one bf16 ulp
    again = run_kernel(args, device, config)
    assert torch.equal(out, again[0]) and torch.equal(new_state, again[1])  # deterministic


@pytest.mark.parametrize("batch,with_state,scale,config", [
    (1, False, 0.0, None), (3, True, 0.3, None), (2, True, 0.0, (16, 2))])
def test_decode_small(batch, with_state, scale, config, device):
    check(batch, with_state, scale, device, seed=batch, config=config)


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 2, 4, 8, 16, 32, 48, 64, 128, 256])
@pytest.mark.parametrize("with_state,scale", [(True, 0.0), (False, 0.125)])
def test_decode_batches_gpu(batch, with_state, scale):
    check(batch, with_state, scale, "cuda", seed=100 + batch)
