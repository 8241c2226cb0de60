"""The evaluator catches deliberately wrong solutions, and judges like the contest."""
import shutil
from pathlib import Path

import pytest
import torch

from fibkit import catalog
from fibkit.catalog import Judge
from fibkit.dataset import dsa
from fibkit.evaluate import judge as J
from fibkit.evaluate.runner import RunOptions, evaluate_definition
from fibkit.references import dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64 as attn
from fibkit.references import dsa_topk_indexer_fp8_h64_d128_topk2048_ps64 as indexer

DECODE = catalog.SPECS["gdn_decode_qk4_v8_d128_k_last"]

BROKEN = {
    # name: (destination passing?, body run after the correct baseline computed into tmp buffers)
    "unwritten_element": (True, "output.view(-1)[1:] = o.view(-1)[1:]\n    new_state.copy_(s)"),
    "nan": (True, "output.copy_(o)\n    new_state.copy_(s)\n    new_state[0, 3, 5, 7] = float('nan')"),
    "error_1e-1": (True, "output.copy_(o)\n    new_state.copy_(s + 0.1)"),
    "wrong_dtype": (False, "return o.float(), s"),
    "crash": (True, "raise RuntimeError('boom')"),
}


def broken_folder(tmp_path: Path, kind: str) -> Path:
    dps, body = BROKEN[kind]
    folder = tmp_path / kind
    shutil.copytree(DECODE.solution_dir("baseline"), folder)
    base = (folder / "main.py").read_text().replace("def run(", "def _baseline(")
    outs = ", output, new_state" if dps else ""
    base += f'''

def run(q, k, v, state, A_log, a, dt_bias, b, scale{outs}):
    o = torch.empty(q.shape[0], 1, 8, 128, dtype=torch.bfloat16)
    s = torch.empty(q.shape[0], 8, 128, 128)
    _baseline(q, k, v, state, A_log, a, dt_bias, b, scale, o, s)
    {body}
'''
    (folder / "main.py").write_text(base)
    cfg = (folder / "config.toml").read_text()
    if not dps:
        cfg = cfg.replace("destination_passing_style = true", "destination_passing_style = false")
    (folder / "config.toml").write_text(cfg)
    return folder


def evaluate(folder=None, device="cpu", **kw):
    opts = RunOptions(device=device, timing=False, smallest=1, trials=2, solution_dir=folder, **kw)
    return evaluate_definition(DECODE, opts)["workloads"]


def test_default_solution_passes_end_to_end(device):
    # The default is a Triton kernel: on the GPU where there is one, else the interpreter.
    rows = evaluate(device=device)
    assert [r["status"] for r in rows] == ["PASSED"]


@pytest.mark.parametrize("kind,status", [
    ("unwritten_element", "INCORRECT_NUMERICAL"), ("nan", "INCORRECT_NUMERICAL"),
    ("error_1e-1", "INCORRECT_NUMERICAL"), ("wrong_dtype", "INCORRECT_DTYPE"),
    ("crash", "RUNTIME_ERROR")])
def test_broken_solutions_fail(tmp_path, kind, status):
    rows = evaluate(broken_folder(tmp_path, kind))
    assert rows[0]["status"] == status, rows[0].get("message")


def test_compare_tolerance_rule():
    y = torch.tensor([1.0, 100.0, 0.0, -float("inf")])
    ok = J.compare(torch.tensor([1.009, 100.9, 0.005, -float("inf")]), y, 1e-2, 1e-2, 1.0)
    assert ok.passed  # within atol, within rtol, within atol, same -inf
    bad = J.compare(torch.tensor([1.1, 100.0, 0.0, -float("inf")]), y, 1e-2, 1e-2, 1.0)
    assert bad.status == J.INCORRECT_NUMERICAL
    inf = J.compare(torch.tensor([1.0, float("inf"), 0.0, -float("inf")]), y, 1e-2, 1e-2, 1.0)
    assert not inf.passed


def test_matched_ratio_rule_for_moe():
    rule = catalog.SPECS["moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048"].judge
    y = torch.randn(1000) * 100
    x = y.clone()
    x[:50] += 1000  # 5% wrong: still >= 90% matched
    assert J.judge_allclose(rule, ["output"], [x.bfloat16()], [y.bfloat16()]).passed
    x[:150] += 1000  # 15% wrong
    assert not J.judge_allclose(rule, ["output"], [x.bfloat16()], [y.bfloat16()]).passed


def test_attention_index_off_by_one_fails():
    g = torch.Generator().manual_seed(0)
    q_nope, q_pe = torch.randn(2, 16, 512, generator=g).bfloat16(), torch.randn(2, 16, 64, generator=g).bfloat16()
    ckv, kpe = torch.randn(30, 64, 512, generator=g).bfloat16(), torch.randn(30, 64, 64, generator=g).bfloat16()
    idx = dsa.sparse_indices(2, 29, g, "cpu")
    good = list(attn.run(q_nope, q_pe, ckv, kpe, idx, 0.07))
    shifted = torch.where(idx >= 0, idx + 1, idx)
    wrong = list(attn.run(q_nope, q_pe, ckv, kpe, shifted, 0.07))
    assert J.judge_allclose(Judge(), ["output", "lse"], good, good).passed
    assert J.judge_allclose(Judge(), ["output", "lse"], wrong, good).status == J.INCORRECT_NUMERICAL


@pytest.fixture
def indexer_case():
    g = torch.Generator().manual_seed(1)
    lens, table = dsa.indexer_tables(3, 40, 200, g, "cpu")
    lens[0] = 1000
    inputs = {"q_index_fp8": torch.randn(3, 64, 128, generator=g).clamp(-2, 2).to(torch.float8_e4m3fn),
              "k_index_cache_fp8": dsa.random_k_cache((200, 64, 1, 132), g, "cpu"),
              "weights": torch.randn(3, 64, generator=g), "seq_lens": lens, "block_table": table}
    ref = indexer.run(*inputs.values())
    return inputs, ref


def test_indexer_set_judgment(indexer_case):
    inputs, ref = indexer_case
    rule = Judge(kind="topk_set")
    shuffled = ref[:, torch.randperm(2048)]  # any order is fine: judged as a set
    assert J.judge_topk_set(rule, shuffled, ref, inputs).passed

    dup = ref.clone()
    dup[0, 1] = dup[0, 0]
    v = J.judge_topk_set(rule, dup, ref, inputs)
    assert not v.passed and "duplicate" in v.message

    off = ref.clone()
    off[0, :1000] += 1  # slot + 1: wrong tokens, some past seq_len or off the page list
    assert not J.judge_topk_set(rule, off, ref, inputs).passed

    beyond = ref.clone()
    beyond[0, 1000] = int(inputs["block_table"][0, 20]) * 64  # page 20 holds no token < 1000
    v = J.judge_topk_set(rule, beyond, ref, inputs)
    assert not v.passed and "not reachable" in v.message

    missing = ref.clone()
    missing[2, 5] = -1  # one valid token dropped
    assert not J.judge_topk_set(rule, missing, ref, inputs).passed

    unwritten = ref.clone()
    unwritten[1, 7] = torch.iinfo(torch.int32).min
    assert not J.judge_topk_set(rule, unwritten, ref, inputs).passed
