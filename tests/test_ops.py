"""The library API: clear errors on bad input, correct results on good input (on the GPU where
there is one, since the defaults are Triton kernels; else the interpreter on the CPU)."""
import pytest
import torch

from fibkit import ops
from fibkit.dataset import dsa
from fibkit.references import gdn_decode_qk4_v8_d128_k_last as decode_ref
from fibkit.testing import GDN_INPUTS, assert_judged_close, synthesized

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def gdn_args(name, axes):
    x = synthesized(name, axes, 0, DEVICE)
    return [x[n] for n in GDN_INPUTS]


def decode_args(batch=2):
    return gdn_args("gdn_decode_qk4_v8_d128_k_last", {"batch_size": batch})


def assert_gdn_matches_reference(op, reference, args, state_tol):
    """The contest rule on output and state, and the state within state_tol of the largest."""
    out, state = op(*args)
    ref_out, ref_state = reference.run(*args, 0.0)
    assert_judged_close(reference.__name__.rsplit(".", 1)[1], out, ref_out, "output")
    assert_judged_close(reference.__name__.rsplit(".", 1)[1], state, ref_state, "state")
    assert (state - ref_state).abs().max() <= state_tol * ref_state.abs().max()


def test_gdn_decode_matches_reference():
    assert_gdn_matches_reference(ops.gdn_decode, decode_ref, decode_args(), 1e-5)


@pytest.mark.parametrize("mutate,match", [
    (lambda a: a.__setitem__(0, a[0].float()), "must be torch.bfloat16"),
    (lambda a: a.__setitem__(2, a[2][:1]), "batch_size = 1, expected 2"),
    (lambda a: a.__setitem__(3, a[3].transpose(-1, -2)), "contiguous"),
    (lambda a: a.__setitem__(4, torch.zeros(4)), "num_v_heads = 4, expected 8"),
    (lambda a: a.__setitem__(1, [1, 2]), "must be a torch.Tensor"),
])
def test_gdn_decode_rejects_bad_input(mutate, match):
    args = decode_args()
    mutate(args)
    with pytest.raises(ValueError, match=match):
        ops.gdn_decode(*args)


def test_dsa_attention_rejects_out_of_range_indices():
    g = torch.Generator().manual_seed(0)
    q_nope, q_pe, ckv, kpe = (torch.randn(*s).bfloat16().to(DEVICE) for s in
                              [(1, 16, 512), (1, 16, 64), (4, 64, 512), (4, 64, 64)])
    idx = dsa.sparse_indices(1, 4, g, "cpu").to(DEVICE)
    out, lse = ops.dsa_sparse_attention(q_nope, q_pe, ckv, kpe, idx, 0.1)
    assert torch.isfinite(lse).all()
    idx[0, 0] = 4 * 64
    with pytest.raises(ValueError, match="outside"):
        ops.dsa_sparse_attention(q_nope, q_pe, ckv, kpe, idx, 0.1)
    with pytest.raises(ValueError, match="int32"):
        ops.dsa_sparse_attention(q_nope, q_pe, ckv, kpe, idx.long(), 0.1)


def test_indexer_rejects_bad_tables():
    g = torch.Generator().manual_seed(0)
    lens, table = dsa.indexer_tables(2, 33, 100, g, "cpu")
    args = [t.to(DEVICE) for t in [torch.randn(2, 64, 128).to(torch.float8_e4m3fn),
                                   dsa.random_k_cache((100, 64, 1, 132), g, "cpu"),
                                   torch.randn(2, 64), lens, table]]
    table = args[4]
    assert ops.dsa_topk_indexer(*args).shape == (2, 2048)
    table[0, 0] = 100
    with pytest.raises(ValueError, match="block_table"):
        ops.dsa_topk_indexer(*args)


def test_moe_library_calls_its_kernels_not_the_graph_cache():
    """The MoE's contest entry point (`run`) captures CUDA graphs of its own; the library calls
    `launch`, which only enqueues the kernels (issue 15)."""
    from fibkit.testing import solution_module

    name = "moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048"
    module = solution_module(name, "triton")
    assert ops._entry(name, False) is module.launch
    assert ops._entry(name, True) is module.launch
    # The other definitions' libraries call their contest entry points.
    assert ops._entry("gdn_decode_qk4_v8_d128_k_last", True) is solution_module(
        "gdn_decode_qk4_v8_d128_k_last", "triton").run


def test_moe_rejects_bad_offset():
    with pytest.raises(ValueError, match="local_expert_offset"):
        ops.moe_fp8_block_scale(*[None] * 8, 240, 2.5)


def test_optional_state_and_required_inputs():
    args = decode_args()
    out, state = ops.gdn_decode(*args[:3], None, *args[4:])  # state None means zeros
    ref_out, ref_state = decode_ref.run(*args[:3], None, *args[4:], 0.0)
    assert torch.allclose(state, ref_state, atol=1e-5)
    args[0] = None
    with pytest.raises(ValueError, match="q is required"):
        ops.gdn_decode(*args)


def prefill_args(lengths=(5, 0, 9)):
    axes = {"total_seq_len": sum(lengths), "num_seqs": len(lengths)}
    cu_seqlens = torch.tensor([0, *lengths]).cumsum(0).to(DEVICE)
    return gdn_args("gdn_prefill_qk4_v8_d128_k_last", axes) + [cu_seqlens]


def test_gdn_prefill_runs_the_default_solution():
    from fibkit.references import gdn_prefill_qk4_v8_d128_k_last as prefill_ref

    assert_gdn_matches_reference(ops.gdn_prefill, prefill_ref, prefill_args(), 1e-2)


@pytest.mark.parametrize("cu", [[1, 5, 5, 14], [0, 5, 5, 13], [0, 6, 5, 14]])
def test_gdn_prefill_rejects_bad_cu_seqlens(cu):
    args = prefill_args()
    args[8] = torch.tensor(cu, device=DEVICE)
    with pytest.raises(ValueError, match="cu_seqlens must start at 0"):
        ops.gdn_prefill(*args)


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    """Without the interpreter chosen, CPU tensors are a clear ValueError (not a Triton driver
    error); with it, they run through the interpreter with fibkit's bf16 fixes applied."""
    args = gdn_args("gdn_decode_qk4_v8_d128_k_last", {"batch_size": 1})
    args = [a.cpu() for a in args]
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="needs CUDA tensors, got cpu"):
        ops.gdn_decode(*args)
    if not torch.cuda.is_available():  # the kernels here were defined for the interpreter
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        out, state = ops.gdn_decode(*args)
        ref_out, ref_state = decode_ref.run(*args, 0.0)
        assert_judged_close("gdn_decode", out, ref_out, "output")
