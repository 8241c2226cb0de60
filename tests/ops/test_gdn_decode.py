"""The GDN decode solutions against the float64 oracle. CPU: the Triton twin through the
interpreter at small batch sizes (both output forms). GPU: it and the CUDA solution (the default)
from batch 1 to 256, each side of every block-shape boundary of the CUDA kernel (12/13, 16/17,
28/29, 40/41, 56/57), CUDA-graph replays and two calls on forked streams of one graph."""
from functools import lru_cache

import pytest
import torch

from fibkit import testing
from fibkit.testing import assert_concurrent_calls_match_alone, assert_graph_replays_are_right
from fibkit.testing import assert_judged_close, gdn_decode_inputs, gdn_decode_oracle, poisoned, solution_module

NAME = "gdn_decode_qk4_v8_d128_k_last"


@lru_cache(maxsize=None)
def solution_call(variant):
    return testing.solution_call(NAME, variant)


def _poisoned_outputs(batch, device="cuda"):
    return poisoned(NAME, {"batch_size": batch}, device)


def run_kernel(args, device, config=None, variant="triton"):
    out, new_state = _poisoned_outputs(args[0].shape[0], device)
    if variant == "triton":
        solution_module(NAME, "triton").launch(*args, out, new_state, config=config)
    else:
        solution_call(variant)(*args, out, new_state)
    return out, new_state


def right(args, outs):
    out, new_state = outs
    ref_out, ref_state = gdn_decode_oracle(*args)
    assert_judged_close(NAME, out, ref_out, "output")
    assert_judged_close(NAME, new_state, ref_state, "new_state")
    # Far inside the contest's tolerance: fp32 state arithmetic, as the definition does.
    assert (new_state.double() - ref_state).abs().max() < 1e-5
    assert (out.double() - ref_out).abs().max() <= 2 ** -7 * ref_out.abs().max()  # one bf16 ulp


def check(batch, with_state, scale, device, seed, config=None, variant="triton"):
    args = gdn_decode_inputs(batch, device, seed, with_state, scale)
    out, new_state = run_kernel(args, device, config, variant)
    right(args, (out, new_state))
    again = run_kernel(args, device, config, variant)
    assert torch.equal(out, again[0]) and torch.equal(new_state, again[1])  # deterministic


@pytest.mark.parametrize("batch,with_state,scale,config", [
    (1, False, 0.0, None), (3, True, 0.3, None), (2, True, 0.0, (16, 2, False)),
    (2, True, 0.0, (8, 1, True)), (3, False, 0.2, (8, 1, True))])
def test_decode_small(batch, with_state, scale, config, device):
    check(batch, with_state, scale, device, seed=batch, config=config)


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 8, 12, 13, 16, 17, 28, 29, 32, 40, 41, 48, 56, 57, 64, 100, 128, 256])
@pytest.mark.parametrize("with_state,scale", [(True, 0.0), (False, 0.125)])
@pytest.mark.parametrize("variant", ["triton", "cuda"])
def test_decode_batches_gpu(batch, with_state, scale, variant):
    check(batch, with_state, scale, "cuda", seed=100 + batch, variant=variant)


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 16, 24, 32, 64])
@pytest.mark.parametrize("variant", ["triton", "cuda"])
def test_decode_graph_replays_gpu(batch, variant):
    """No host sync: the call captures into a CUDA graph and each replay on fresh inputs is right."""
    assert_graph_replays_are_right(solution_call(variant), gdn_decode_inputs(batch, "cuda", 40),
                                   _poisoned_outputs(batch), lambda seed: gdn_decode_inputs(batch, "cuda", seed),
                                   right)


@pytest.mark.gpu
@pytest.mark.parametrize("batches", [(1, 1), (8, 64), (32, 3)])
@pytest.mark.parametrize("variant", ["triton", "cuda"])
def test_decode_concurrent_calls_in_one_graph_gpu(batches, variant):
    """Two calls (different inputs and outputs) on two forked streams of one CUDA graph, replayed
    100 times: each is bitwise the call run alone."""
    calls = [gdn_decode_inputs(b, "cuda", seed=50 + i) for i, b in enumerate(batches)]
    assert_concurrent_calls_match_alone(solution_call(variant), calls,
                                        [_poisoned_outputs(b) for b in batches])
