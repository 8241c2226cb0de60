"""The GDN prefill solutions against the float64 oracle. The Triton one on CPU through the
interpreter (partial chunks, a zero-length sequence, a 3-chunk sequence); on the GPU the Triton
and the CUDA one (the default): the official size range, one 8192-token sequence, many
sequences, bitwise repeats, CUDA-graph replay, two calls on forked streams of one graph."""
from functools import lru_cache

import pytest
import torch

from fibkit.testing import assert_judged_close, gdn_oracle, gdn_prefill_inputs as make_inputs
from fibkit import testing
from fibkit.testing import assert_concurrent_calls_match_alone, assert_graph_replays_are_right
from fibkit.testing import max_error_of_max, poisoned, solution_module

NAME = "gdn_prefill_qk4_v8_d128_k_last"


def _poisoned_outputs(args):
    axes = {"total_seq_len": args[0].shape[0], "num_seqs": args[8].numel() - 1}
    return poisoned(NAME, axes, args[0].device)


@lru_cache(maxsize=None)
def solution_call(variant):
    return testing.solution_call(NAME, variant)


def run_kernel(args, config=None, variant="triton"):
    out, new_state = _poisoned_outputs(args)
    if config is None:
        solution_call(variant)(*args, out, new_state)
    else:  # the Triton solution's launch forms
        solution_module(NAME, "triton").launch(*args, out, new_state, config=config)
    return out, new_state


def check(args, config=None, out_rel=2 ** -7, state_rel=5e-3, variant="triton"):
    out, new_state = run_kernel(args, config, variant)
    ref_out, ref_state = gdn_oracle(*args)
    assert_judged_close(NAME, out, ref_out, "output")
    assert_judged_close(NAME, new_state, ref_state, "new_state")
    if out.numel():
        assert max_error_of_max(out, ref_out) <= out_rel
    if ref_state.abs().max() > 0:
        assert max_error_of_max(new_state, ref_state) <= state_rel
    return out, new_state


@pytest.mark.parametrize("lengths,with_state,scale,config", [
    ([5, 0, 65, 130], True, 0.0, None),  # partial chunks, an empty sequence, 3 chunks
    ([64, 3], False, 0.2, dict(prepared=True)),  # prepare + walk, no initial state
    ([0, 0], True, 0.0, None),  # no tokens at all: new states are zero
    ([0, 17, 0], True, 0.0, dict(prepared=True)),  # empty sequences at both ends
])
def test_prefill_small(lengths, with_state, scale, config, device):
    args = make_inputs(lengths, device, seed=len(lengths), with_state=with_state, scale=scale)
    check(args, config)


@pytest.mark.gpu
@pytest.mark.parametrize("lengths", [
    [6], [1], [64], [1, 1, 1], [100, 139], [983, 17, 1], [2107], [8192], [2855, 2854],
    [300] * 27 + [92], [144] * 56 + [128], [63, 64, 65, 127, 128, 129],
    [0, 7, 0, 0, 500, 0], [0, 1, 0], [4124], [128] * 64, [1] * 300,
    [5, 700, 0, 33, 1500, 2, 0, 90, 400, 17, 700]])  # CUDA: blocks go out longest first
@pytest.mark.parametrize("with_state", [True, False])
@pytest.mark.parametrize("variant", ["triton", "cuda"])
def test_prefill_gpu(lengths, with_state, variant):
    args = make_inputs(lengths, "cuda", seed=sum(lengths), with_state=with_state)
    out, new_state = check(args, variant=variant)
    again = run_kernel(args, variant=variant)
    assert torch.equal(out, again[0]) and torch.equal(new_state, again[1])


@pytest.mark.gpu
@pytest.mark.parametrize("lengths", [[40, 0, 216], [700, 1500, 40]])
def test_prefill_launch_forms_are_right_and_repeat_gpu(lengths):
    args = make_inputs(lengths, "cuda", seed=3)
    for prepared in (False, True):
        first = check(args, dict(prepared=prepared))
        for _ in range(3):
            again = run_kernel(args, dict(prepared=prepared))
            assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["triton", "cuda"])
def test_prefill_cuda_graph_replay_gpu(variant):
    def right(args, outs):
        ref_out, ref_state = gdn_oracle(*args)
        assert_judged_close(NAME, outs[0], ref_out, "output")
        assert_judged_close(NAME, outs[1], ref_state, "new_state")

    args = make_inputs([900, 31, 3000], "cuda", seed=11)
    assert_graph_replays_are_right(solution_call(variant), args, _poisoned_outputs(args),
                                   lambda seed: make_inputs([900, 31, 3000], "cuda", seed=seed), right)


@pytest.mark.gpu
@pytest.mark.parametrize("lengths", [[6], [983], [500, 0, 483]])
@pytest.mark.parametrize("variant", ["triton", "cuda"])
def test_prefill_concurrent_calls_in_one_graph_gpu(lengths, variant):
    """Two calls on two forked streams of one CUDA graph (as a serving engine overlapping two
    batches would run them) finish, and each is bitwise the call run alone, on every replay."""
    calls = [make_inputs(lengths, "cuda", seed=s) for s in (21, 22)]
    assert_concurrent_calls_match_alone(solution_call(variant), calls, [_poisoned_outputs(a) for a in calls])
