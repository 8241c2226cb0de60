"""Our vectorized references against the official references (../shared), on small random
inputs at the definitions' fixed head sizes; MoE's official reference needs ~17 GB, so it
runs on the GPU only."""

import pytest
import torch

from conftest import official_reference
from fibkit import catalog
from fibkit.dataset import dsa
from fibkit.references import (dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64 as attn,
                               dsa_topk_indexer_fp8_h64_d128_topk2048_ps64 as indexer,
                               gdn_decode_qk4_v8_d128_k_last as decode,
                               gdn_prefill_qk4_v8_d128_k_last as prefill,
                               moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048 as moe)
from fibkit.testing import dsa_attention_inputs, moe_inputs


def close(a, b, tol=1e-4):
    a, b = a.double(), b.double()
    both_inf = torch.isinf(a) & torch.isinf(b) & (a == b)
    assert (both_inf | ((a - b).abs() <= tol * (1 + b.abs()))).all(), (a - b).abs().max()


@pytest.mark.parametrize("with_state,scale", [(True, 0.0), (False, 0.1)])
def test_gdn_decode_matches_official(with_state, scale):
    g = torch.Generator().manual_seed(1)
    x = catalog.SPECS["gdn_decode_qk4_v8_d128_k_last"].synthesize({"batch_size": 3}, g, "cpu")
    args = [x["q"], x["k"], x["v"], x["state"] if with_state else None, x["A_log"], x["a"],
            x["dt_bias"], x["b"], scale]
    for ours, theirs in zip(decode.run(*args), official_reference("gdn_decode_qk4_v8_d128_k_last")(*args)):
        close(ours, theirs, 1e-2 if ours.dtype == torch.bfloat16 else 1e-5)


def test_gdn_prefill_matches_official():
    g = torch.Generator().manual_seed(2)
    x = catalog.SPECS["gdn_prefill_qk4_v8_d128_k_last"].synthesize({"total_seq_len": 40, "num_seqs": 3}, g, "cpu")
    x["cu_seqlens"] = torch.tensor([0, 17, 17, 40])  # a zero-length sequence in the middle
    args = [x[n] for n in ["q", "k", "v", "state", "A_log", "a", "dt_bias", "b", "cu_seqlens"]] + [0.0]
    ours = prefill.run(*args)
    theirs = official_reference("gdn_prefill_qk4_v8_d128_k_last")(*args)
    close(ours[0], theirs[0], 1e-2)
    close(ours[1][[0, 2]], theirs[1][[0, 2]], 1e-5)
    # A zero-length sequence's new_state is zero in both (the initial state is not carried).
    assert torch.equal(theirs[1][1], torch.zeros_like(theirs[1][1]))
    assert torch.equal(ours[1][1], theirs[1][1])


def test_dsa_attention_matches_official():
    args = dsa_attention_inputs(3, 40, "cpu", seed=3)  # row 1: one valid slot; row 2: none
    args[4][0] = dsa.sparse_indices(1, 40, torch.Generator().manual_seed(3), "cpu")[0]  # realistic row
    for ours, theirs in zip(attn.run(*args), official_reference("dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64")(*args)):
        close(ours, theirs, 1e-2)


def test_dsa_indexer_matches_official_as_a_set():
    g = torch.Generator().manual_seed(4)
    batch, max_pages, pages = 4, 40, 300
    seq_lens, table = dsa.indexer_tables(batch, max_pages, pages, g, "cpu")
    seq_lens[0] = 100
    seq_lens[1] = 0
    k_cache = dsa.random_k_cache((pages, 64, 1, 132), g, "cpu")
    q = torch.randn(batch, 64, 128, generator=g).clamp(-2, 2).to(torch.float8_e4m3fn)
    w = torch.randn(batch, 64, generator=g)
    args = [q, k_cache, w, seq_lens, table]
    ours = indexer.run(*args)
    theirs = official_reference("dsa_topk_indexer_fp8_h64_d128_topk2048_ps64")(*args)[0]
    for row in range(batch):
        assert set(ours[row].tolist()) == set(theirs[row].tolist())


@pytest.mark.gpu
def test_moe_matches_official_gpu():
    args = moe_inputs(9, 7168, 2048, 64, "cuda", seed=5)
    ours = moe.run(*args).float()
    theirs = official_reference("moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048")(*args).float()
    rel = (ours - theirs).norm() / theirs.norm()
    assert rel < 1e-3


def test_moe_routing_against_float64_oracle():
    """Routing alone, on the CPU: our vectorized route() against a per-token float64 walk."""
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(16, 256, generator=g) * 2
    bias = (torch.randn(256, generator=g) * 0.05).bfloat16()
    idx, w = moe.route(logits, bias, 2.5)
    s = torch.sigmoid(logits.double())
    biased = s + bias.double()
    for t in range(16):
        groups = biased[t].view(8, 32)
        top_groups = groups.topk(2, dim=1).values.sum(1).topk(4).indices.tolist()
        cand = [e for grp in top_groups for e in range(grp * 32, grp * 32 + 32)]
        chosen = sorted(cand, key=lambda e: -biased[t, e].item())[:8]
        assert set(idx[t].tolist()) == set(chosen)
        weights = s[t, chosen] / s[t, chosen].sum() * 2.5
        assert torch.allclose(w[t, chosen].double(), weights, rtol=1e-5)
