"""The DSA sparse attention solutions against a float64 oracle: padding anywhere in a row, at
the end of a row (whole tiles of padding), a row of one valid slot, a row of padding only
(output 0, lse -FLT_MAX). CPU: the Triton twin through the interpreter. GPU: the CUDA solution
(the default) and its twin at the official sizes and beyond, bitwise repeats, CUDA-graph replay
on fresh inputs, two calls on forked streams of one graph."""
from functools import lru_cache

import pytest
import torch

from fibkit import testing
from fibkit.testing import assert_concurrent_calls_match_alone, assert_graph_replays_are_right
from fibkit.testing import assert_judged_close, poisoned
from fibkit.testing import dsa_attention_inputs as make_inputs, dsa_attention_oracle as oracle
from fibkit.testing import solution_module

NAME = "dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64"
FLT_MAX = torch.finfo(torch.float32).max


@lru_cache(maxsize=None)
def solution_call(variant):
    return testing.solution_call(NAME, variant)


def run_kernel(args, variant="triton", config=None):
    out, lse = poisoned(NAME, {"num_tokens": args[0].shape[0], "num_pages": args[2].shape[0]},
                        args[0].device)
    if config is None:
        solution_call(variant)(*args, out, lse)
    else:  # the Triton twin's launch forms
        solution_module(NAME, "triton").launch(*args, out, lse, config=config)
    return out, lse


def check(args, variant="triton", config=None):
    out, lse = run_kernel(args, variant, config)
    ref_out, ref_lse = oracle(*args)
    assert_judged_close(NAME, out, ref_out, "output")
    some = torch.isfinite(ref_lse)  # tokens with a valid slot
    assert torch.isfinite(lse).all()
    assert (lse[~some] == -FLT_MAX).all() and (out[~some.all(dim=1)] == 0).all()
    assert_judged_close(NAME, lse[some], ref_lse[some], "lse")
    return out, lse


def padded_at_the_end(args, valid_counts):
    """Row t keeps its first valid_counts[t] slots (distinct, none -1) and pads the rest, as
    decoding short sequences does: the CUDA kernel skips its tiles of padding only."""
    idx = args[4]
    pages = args[2].shape[0]
    g = torch.Generator().manual_seed(len(valid_counts))
    for t, n in enumerate(valid_counts):
        idx[t] = -1
        idx[t, :n] = torch.randperm(pages * 64, generator=g)[:n].to(idx.device, torch.int32)
    return args


@pytest.mark.parametrize("tokens,splits", [(3, 64), (2, 16), (3, 1)])
def test_attention_small(tokens, splits, device):
    check(make_inputs(tokens, 40, device, seed=tokens), config=dict(splits=splits))


def test_attention_padding_at_the_end_small(device):
    args = padded_at_the_end(make_inputs(4, 40, device, seed=5), [1, 33, 0, 2048])
    check(args, config=dict(splits=16))


@pytest.mark.gpu
@pytest.mark.parametrize("tokens", [1, 2, 3, 6, 7, 8, 200])
@pytest.mark.parametrize("variant", ["cuda", "triton"])
def test_attention_gpu(tokens, variant):
    args = make_inputs(tokens, 8462, "cuda", seed=tokens)
    first = check(args, variant)
    again = run_kernel(args, variant)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["cuda", "triton"])
def test_attention_padding_at_the_end_gpu(variant):
    counts = [1, 31, 32, 33, 100, 127, 128, 129, 1000, 2047, 2048, 0]
    check(padded_at_the_end(make_inputs(len(counts), 8462, "cuda", seed=7), counts), variant)


@pytest.mark.gpu
def test_attention_official_workloads_gpu():
    """The 23 official workloads' shapes and synthesized indices, fresh random q and caches."""
    from fibkit import catalog
    from fibkit.evaluate.workloads import WorkloadSource

    spec = catalog.SPECS[NAME]
    for trial, wl in enumerate(WorkloadSource(spec, None, 0).workloads()):
        check(testing.official_inputs(NAME, wl, seed=100 + trial), "cuda")


@pytest.mark.gpu
def test_attention_cuda_graph_replay_gpu():
    def right(args, outs):
        ref_out, ref_lse = oracle(*args)
        assert_judged_close(NAME, outs[0], ref_out, "output")
        some = torch.isfinite(ref_lse)
        assert_judged_close(NAME, outs[1][some], ref_lse[some], "lse")

    args = make_inputs(5, 8462, "cuda", seed=11)
    assert_graph_replays_are_right(solution_call("cuda"), args, run_kernel(args, "cuda"),
                                   lambda seed: make_inputs(5, 8462, "cuda", seed=seed), right)


@pytest.mark.gpu
@pytest.mark.parametrize("tokens", [1, 2, 8])
@pytest.mark.parametrize("variant", ["cuda", "triton"])
def test_attention_concurrent_calls_in_one_graph_gpu(tokens, variant):
    calls = [make_inputs(tokens, 8462, "cuda", seed=s) for s in (21, 22)]
    outs = [run_kernel(a, variant) for a in calls]
    assert_concurrent_calls_match_alone(solution_call(variant), calls, outs)
