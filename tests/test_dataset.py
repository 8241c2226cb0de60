"""The offline dataset: the 324 official workloads, realistic synthesized inputs, and a
folder flashinfer-bench's TraceSet loads."""
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import SHARED
from fibkit import catalog
from fibkit.dataset import official_workloads
from fibkit.dataset import dsa
from fibkit.dataset.writer import blob_tensors, write_dataset


def test_official_workload_table_matches_shared():
    total = sum(len(official_workloads(n)) for n in catalog.SPECS)
    assert total == 324
    if not SHARED.is_dir():
        pytest.skip("../shared absent")
    for name, spec in catalog.SPECS.items():
        path = SHARED / "workloads" / spec.op_type / f"{name}.jsonl"
        official = [json.loads(l)["workload"] for l in path.read_text().splitlines() if l.strip()]
        ours = official_workloads(name)
        assert [w["uuid"] for w in official] == [w.uuid for w in ours]
        assert [w["axes"] for w in official] == [w.axes for w in ours]
        for o, w in zip(official, ours):
            kinds = {k: v["type"] for k, v in o["inputs"].items()}
            assert {k for k, t in kinds.items() if t == "safetensors"} == set(w.blob_inputs)
            assert {k: v["value"] for k, v in o["inputs"].items() if v["type"] == "scalar"} == w.scalars


def test_written_folder_loads_in_traceset(tmp_path):
    from flashinfer_bench import TraceSet

    n = write_dataset(tmp_path, seed=3, limit=2)
    ts = TraceSet.from_path(str(tmp_path))
    assert n == 10 and set(ts.definitions) == set(catalog.SPECS)
    assert all(len(v) == 2 for v in ts.workloads.values())
    from flashinfer_bench.bench.utils import load_safetensors

    for name, traces in ts.workloads.items():
        tensors = load_safetensors(ts.definitions[name], traces[0].workload, tmp_path)
        assert set(tensors) == {k for k, v in traces[0].workload.inputs.items() if v.type == "safetensors"}


def test_synthesis_is_deterministic_per_seed():
    wl = official_workloads("gdn_prefill_qk4_v8_d128_k_last")[3]
    a, b, c = blob_tensors(wl, 0), blob_tensors(wl, 0), blob_tensors(wl, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["q"], c["q"])


@pytest.mark.parametrize("name", ["gdn_decode_qk4_v8_d128_k_last", "gdn_prefill_qk4_v8_d128_k_last"])
def test_gdn_inputs_are_realistic(name):
    wl = next(w for w in official_workloads(name) if 2 < w.axes.get("batch_size", w.axes.get("num_seqs", 0)) < 40
              or w.axes.get("num_seqs", 0) > 2)
    x = blob_tensors(wl)
    for t in ("q", "k"):
        norms = x[t].float().norm(dim=-1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-2)
    g = torch.exp(-x["A_log"].exp() * F.softplus(x["a"].float() + x["dt_bias"]))
    assert (g > 0).all() and (g < 1).all() and g.min() < 0.5 and g.max() > 0.9
    s = x["state"]
    assert s.abs().max() > 0.1 and torch.isfinite(s).all()
    # a state produced by the recurrence is strongly structured: far from full-rank noise
    sv = torch.linalg.svdvals(s[0, 0])
    assert sv[40:].sum() < 1e-3 * sv.sum()
    if "cu_seqlens" in x:
        cu = x["cu_seqlens"]
        assert cu[0] == 0 and cu[-1] == wl.axes["total_seq_len"] and (cu[1:] > cu[:-1]).all()
        assert cu.numel() == wl.axes["num_seqs"] + 1


def test_dsa_sparse_indices_are_distinct_valid_slots():
    rows = []
    for wl in official_workloads("dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64"):
        idx = blob_tensors(wl)["sparse_indices"]
        slots = wl.axes["num_pages"] * 64
        assert idx.shape == (wl.axes["num_tokens"], 2048) and idx.dtype == torch.int32
        for row in idx:
            valid = row[row >= 0]
            assert ((row == -1) | ((row >= 0) & (row < slots))).all()
            assert valid.unique().numel() == valid.numel() > 0
            # padding only after the valid slots
            n = valid.numel()
            assert (row[:n] >= 0).all() and (row[n:] == -1).all()
            rows.append(n)
    assert min(rows) < 2048 and max(rows) == 2048  # both padded and full rows occur


def test_indexer_tables_are_consistent():
    short = long = 0
    for wl in official_workloads("dsa_topk_indexer_fp8_h64_d128_topk2048_ps64"):
        x = blob_tensors(wl)
        m, pages = wl.axes["max_num_pages"], wl.axes["num_pages"]
        lens, table = x["seq_lens"].long(), x["block_table"].long()
        assert ((lens + 63) // 64 <= m).all() and ((lens + 63) // 64 == m).any() and (lens >= 1).all()
        assert table.shape == (wl.axes["batch_size"], m)
        assert ((table >= 0) & (table < pages)).all() and table.unique().numel() == table.numel()
        short += int((lens <= 2048).sum())
        long += int((lens > 2048).sum())
    assert short > 0 and long > 0


def test_k_cache_packing_matches_deep_gemm_layout():
    from fibkit.references.dsa_topk_indexer_fp8_h64_d128_topk2048_ps64 import dequant_k_cache

    k = torch.randn(3, 64, 1, 128)
    packed = dsa.pack_k_cache(k)
    assert packed.shape == (3, 64, 1, 132) and packed.dtype == torch.int8
    raw = packed.view(torch.uint8).reshape(3, -1)
    scales = raw[:, 64 * 128:].contiguous().view(torch.float32)  # the last 256 bytes of a page
    assert torch.allclose(scales, k.abs().amax(dim=-1).reshape(3, 64) / 448)
    assert (dequant_k_cache(packed) - k[:, :, 0]).abs().max() < 0.1 * k.abs().max()


def test_moe_routing_has_hot_experts():
    from fibkit.references.moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048 import route

    wl = max(official_workloads("moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048"),
             key=lambda w: w.axes["seq_len"])
    x = blob_tensors(wl)
    idx, _ = route(x["routing_logits"], x["routing_bias"], 2.5)
    load = torch.bincount(idx.reshape(-1), minlength=256).float()
    assert load.max() > 4 * load.mean()  # some experts are hot
    assert x["routing_bias"].dtype == torch.bfloat16 and x["routing_bias"].abs().max() < 1
