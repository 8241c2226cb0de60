"""The Triton GDN prefill kernel against the float64 oracle. On CPU through the interpreter
(partial chunks, a zero-length sequence, a 3-chunk sequence); on the GPU the official size
range, one 8192-token sequence, many sequences, CUDA-graph replay and determinism."""
import pytest
import torch

from conftest import assert_judged_close, solution_module
from fibkit.dataset import gdn
from gdn_oracle import gdn_oracle, on

NAME = "gdn_prefill_qk4_v8_d128_k_last"
INPUTS = ["q", "k", "v", "state", "A_log", "a", "dt_bias", "b"]


def make_inputs(lengths, device, seed, with_state=True, scale=0.0):
    total = sum(lengths)
    x = on(gdn.synthesize(NAME, {"total_seq_len": total, "num_seqs": len(lengths)}, torch.Generator().manual_seed(seed), "cpu"), device)
    cu = torch.tensor([0] + lengths, device=device).cumsum(0)
    args = [x[n] for n in INPUTS] + [cu, scale]
    if not with_state:
        args[3] = None
    return args


def run_kernel(args, config=None):
    q, v, cu = args[0], args[2], args[8]
    out = torch.full(v.shape, float("nan"), dtype=torch.bfloat16, device=q.device)
    new_state = torch.full((cu.numel() - 1, 8, 128, 128), float("nan"), device=q.device)
    solution_module(NAME, "triton").launch(*args, out, new_state, config=config)
    return out, new_state


def check(args, config=None, out_rel=2 ** -7, state_rel=5e-3):
    out, new_state = run_kernel(args, config)
    ref_out, ref_state = gdn_oracle(*args)
    assert_judged_close(out, ref_out, what="output")
    assert_judged_close(new_state, ref_state, what="new_state")
    if out.numel():
        assert (out.double() - ref_out).abs().max() <= out_rel * ref_out.abs().max()
    assert (new_state.double() - ref_state).abs().max() <= state_rel * ref_state.abs().max()
    return out, new_state


@pytest.mark.parametrize("lengths,with_state,scale,config", [
    ([5, 0, 65, 130], True, 0.0, None),  # partial chunks, an empty sequence, 3 chunks
    ([64, 3], False, 0.2, dict(fused=False)),  # one launch per role, no initial state
    ([0, 0], True, 0.0, None),  # no tokens at all: states carried through unchanged
])
def test_prefill_small(lengths, with_state, scale, config, device):
    args = make_inputs(lengths, device, seed=len(lengths), with_state=with_state, scale=scale)
    check(args, config)


@pytest.mark.gpu
@pytest.mark.parametrize("lengths", [
    [6], [64], [1, 1, 1], [100, 139], [983, 17, 1], [2107], [8192],
    [300] * 27 + [92], [7, 0, 0, 500, 0], [4124], [128] * 64, [1] * 300])
@pytest.mark.parametrize("with_state", [True, False])
def test_prefill_gpu(lengths, with_state):
    check(make_inputs(lengths, "cuda", seed=sum(lengths), with_state=with_state))


@pytest.mark.gpu
def test_prefill_launch_forms_agree_and_repeat_gpu():
    args = make_inputs([700, 1500, 40], "cuda", seed=3)
    fused = run_kernel(args, dict(fused=True))
    for _ in range(3):
        again = run_kernel(args, dict(fused=True))
        assert torch.equal(fused[0], again[0]) and torch.equal(fused[1], again[1])
    two = run_kernel(args, dict(fused=False))
    assert torch.equal(fused[0], two[0]) and torch.equal(fused[1], two[1])


@pytest.mark.gpu
def test_prefill_cuda_graph_replay_gpu():
    """No host sync: the call captures into a CUDA graph, and replays on new inputs are right."""
    args = make_inputs([900, 31, 3000], "cuda", seed=11)
    out = torch.empty(args[2].shape, dtype=torch.bfloat16, device="cuda")
    new_state = torch.empty(args[3].shape, device="cuda")
    run = solution_module(NAME, "triton").run
    run(*args, out, new_state)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run(*args, out, new_state)
    for seed in (12, 13):
        fresh = make_inputs([900, 31, 3000], "cuda", seed=seed)
        for dst, src in zip(args, fresh):
            if isinstance(dst, torch.Tensor):
                dst.copy_(src)
        out.fill_(float("nan"))
        new_state.fill_(float("nan"))
        graph.replay()
        ref_out, ref_state = gdn_oracle(*args)
        assert_judged_close(out, ref_out, what="output")
        assert_judged_close(new_state, ref_state, what="new_state")
