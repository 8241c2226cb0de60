"""GPU checks of the CUDA prefill in this folder, before it becomes a solution variant:
against the float64 oracle by the contest's rule and fibkit's accuracy bounds, bitwise
repeats, two calls on two forked streams of one CUDA graph. Run on the device:

    python3 -m pytest -q wip/gdn_prefill_cuda/test_gpu.py
"""
from pathlib import Path

import pytest
import torch

from fibkit import catalog
from fibkit.evaluate.solution import load, pack
from fibkit.testing import assert_judged_close, gdn_oracle, gdn_prefill_inputs, max_error_of_max, poisoned

NAME = "gdn_prefill_qk4_v8_d128_k_last"
LENGTHS = [
    [6], [1], [64], [1, 1, 1], [100, 139], [983, 17, 1], [2107], [8192], [2855, 2854],
    [300] * 27 + [92], [144] * 56 + [128], [63, 64, 65, 127, 128, 129],
    [0, 7, 0, 0, 500, 0], [0, 1, 0], [4124], [128] * 64, [1] * 300]


@pytest.fixture(scope="module")
def solution():
    return load(pack(Path(__file__).resolve().parent / "solution"), catalog.load_definition(NAME))


def call(fn, args):
    outs = poisoned(NAME, {"total_seq_len": args[0].shape[0], "num_seqs": args[8].numel() - 1}, "cuda")
    fn(*args, *outs)
    return outs


@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("with_state", [True, False])
def test_against_the_oracle_and_repeats(solution, lengths, with_state):
    args = gdn_prefill_inputs(lengths, "cuda", seed=sum(lengths), with_state=with_state)
    out, new_state = call(solution, args)
    ref_out, ref_state = gdn_oracle(*args)
    assert_judged_close(NAME, out, ref_out, "output")
    assert_judged_close(NAME, new_state, ref_state, "new_state")
    if out.numel():
        assert max_error_of_max(out, ref_out) <= 2 ** -7
    if ref_state.abs().max() > 0:
        assert max_error_of_max(new_state, ref_state) <= 5e-3
    again = call(solution, args)
    assert torch.equal(out, again[0]) and torch.equal(new_state, again[1])


@pytest.mark.parametrize("lengths", [[6], [983], [500, 0, 483]])
def test_two_calls_on_forked_streams_of_one_graph(solution, lengths):
    calls = [gdn_prefill_inputs(lengths, "cuda", seed=s) for s in (21, 22)]
    alone = [call(solution, a) for a in calls]
    outs = [[torch.empty_like(x) for x in o] for o in alone]
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        origin = torch.cuda.current_stream()
        for stream, args, out in zip(streams, calls, outs):
            stream.wait_stream(origin)
            with torch.cuda.stream(stream):
                for x in out:
                    x.fill_(float("nan"))
                solution(*args, *out)
        for stream in streams:
            origin.wait_stream(stream)
    for replay in range(100):
        graph.replay()
        torch.cuda.synchronize()
        for out, want in zip(outs, alone):
            assert all(torch.equal(x, y) for x, y in zip(out, want)), replay
