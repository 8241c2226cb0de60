"""The evaluator catches deliberately wrong solutions, and judges and times like the contest's
evaluator (flashinfer-bench main): each rule fails a wrong solution and passes a right one."""
import shutil
from pathlib import Path

import pytest
import torch

from fibkit import catalog, report
from fibkit.catalog import Judge
from fibkit.dataset import dsa
from fibkit.evaluate import cache as cache_lib
from fibkit.evaluate import judge as J
from fibkit.evaluate import timing
from fibkit.evaluate.runner import RunOptions, evaluate_definition
from fibkit.references import dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64 as attn
from fibkit.references import dsa_topk_indexer_fp8_h64_d128_topk2048_ps64 as indexer

DECODE = catalog.SPECS["gdn_decode_qk4_v8_d128_k_last"]
ATTENTION = catalog.SPECS["dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64"]

BROKEN = {
    # name: (destination passing?, body run after the correct baseline computed into o, s)
    "unwritten_element": (True, "output.view(-1)[1:] = o.view(-1)[1:]\n    new_state.copy_(s)"),
    "nan": (True, "output.copy_(o)\n    new_state.copy_(s)\n    new_state[0, 3, 5, 7] = float('nan')"),
    "inf": (True, "output.copy_(o)\n    new_state.copy_(s)\n    new_state[0, 3, 5, 7] = -float('inf')"),
    "error_1e-1": (True, "output.copy_(o)\n    new_state.copy_(s + 0.1)"),
    "wrong_dtype": (False, "return o.float(), s"),
    "short_tuple": (False, "return (o,)"),
    "bare_tensor": (False, "return o"),
    "crash": (True, "raise RuntimeError('boom')"),
    "raises_when_timed": (True, "CALLS.append(1)\n    if len(CALLS) > 2:\n        raise RuntimeError('only when timed')"
                                "\n    output.copy_(o)\n    new_state.copy_(s)"),
    "sleeps": (True, "import time\n    time.sleep(30)"),
    "right_value_returning": (False, "return o, s"),
}


def broken_folder(tmp_path: Path, kind: str) -> Path:
    dps, body = BROKEN[kind]
    folder = tmp_path / kind
    shutil.copytree(DECODE.solution_dir("baseline"), folder)
    base = (folder / "main.py").read_text().replace("def run(", "def _baseline(")
    outs = ", output, new_state" if dps else ""
    base += f'''
CALLS = []


def run(q, k, v, state, A_log, a, dt_bias, b, scale{outs}):
    o = torch.empty(q.shape[0], 1, 8, 128, dtype=torch.bfloat16)
    s = torch.empty(q.shape[0], 8, 128, 128)
    _baseline(q, k, v, state, A_log, a, dt_bias, b, scale, o, s)
    {body}
'''
    (folder / "main.py").write_text(base)
    cfg = (folder / "config.toml").read_text().replace(
        'name = "gdn_decode_qk4_v8_d128_k_last_torch_baseline"', f'name = "broken-{kind}"')
    if not dps:
        cfg = cfg.replace("destination_passing_style = true", "destination_passing_style = false")
    (folder / "config.toml").write_text(cfg)
    return folder


def evaluate(folder=None, device="cpu", spec=DECODE, **kw):
    kw = {"timing": False, "smallest": 1, "trials": 2, **kw}
    opts = RunOptions(device=device, solution=folder, **kw)
    return evaluate_definition(spec, opts)["workloads"]


def test_default_solution_passes_end_to_end(device):
    # On the GPU where there is one, else the CUDA default's Triton twin through the interpreter.
    rows = evaluate(device=device)
    assert [r["status"] for r in rows] == ["PASSED"]


@pytest.mark.parametrize("kind,status", [
    ("unwritten_element", "INCORRECT_NUMERICAL"), ("nan", "INCORRECT_NUMERICAL"),
    ("inf", "INCORRECT_NUMERICAL"), ("error_1e-1", "INCORRECT_NUMERICAL"),
    ("wrong_dtype", "INCORRECT_DTYPE"), ("short_tuple", "RUNTIME_ERROR"),
    ("bare_tensor", "RUNTIME_ERROR"), ("crash", "RUNTIME_ERROR"), ("right_value_returning", "PASSED")])
def test_judged_as_the_contest_judges(tmp_path, kind, status):
    rows = evaluate(broken_folder(tmp_path, kind))
    assert rows[0]["status"] == status, rows[0].get("message")


@pytest.fixture
def cpu_timer(monkeypatch):
    """A stand-in for the CUPTI timer on a CPU machine: calls the function like the real one
    (warm-up, then timed iterations) and reports the number of calls as its 'median'."""
    calls = []

    def fake(fn, args, warmup=10, iters=50):
        for _ in range(warmup + iters):
            fn(*args)
        calls.append((warmup, iters))
        return float(warmup + iters)

    monkeypatch.setattr(timing, "time_us", fake)
    return calls


def test_each_trial_is_timed_with_the_definitions_counts(cpu_timer):
    rows = evaluate(timing=True, peers=False, trials=3, variant="baseline", smallest=2)
    # Three trials of the solution and three of the reference per workload, 10 / 50 each.
    assert cpu_timer == [(10, 50)] * 12
    assert [r["status"] for r in rows] == ["PASSED", "PASSED"]
    assert rows[0]["latency_us"] == 60.0  # the mean of the three trials' medians
    assert catalog.SPECS["gdn_prefill_qk4_v8_d128_k_last"].timing == (1, 5)


def test_error_while_timing_is_a_runtime_error_and_the_run_goes_on(tmp_path, cpu_timer):
    rows = evaluate(broken_folder(tmp_path, "raises_when_timed"), timing=True, peers=False, smallest=2)
    assert [r["status"] for r in rows] == ["RUNTIME_ERROR", "RUNTIME_ERROR"]
    assert "while timing" in rows[0]["message"] and "only when timed" in rows[0]["message"]


def test_timeout(tmp_path):
    rows = evaluate(broken_folder(tmp_path, "sleeps"), timeout_s=0.5, smallest=2, trials=1)
    assert [r["status"] for r in rows] == ["TIMEOUT", "TIMEOUT"]
    assert "0.5 s limit" in rows[0]["message"]


def test_dsa_attention_may_return_output_alone(tmp_path):
    folder = tmp_path / "output_only"
    folder.mkdir()
    (folder / "main.py").write_text(
        ATTENTION.reference_path.read_text()
        + "\n\ndef output_only(*args):\n    return run(*args)[0]\n"
        + "\n\ndef three(*args):\n    o, lse = run(*args)\n    return o, lse, lse\n")
    for entry, status in (("output_only", "PASSED"), ("three", "INCORRECT_SHAPE")):
        (folder / "config.toml").write_text(
            f'[solution]\nname = "{entry}"\ndefinition = "dsa_attention"\nauthor = "t"\n'
            f'[build]\nlanguage = "python"\nentry_point = "main.py::{entry}"\n'
            'destination_passing_style = false\n')
        rows = evaluate(folder, spec=ATTENTION, trials=1)
        assert rows[0]["status"] == status, rows[0].get("message")


def test_non_finite_rule():
    y = torch.tensor([1.0, 100.0, 0.0, -float("inf")])
    ok = J.compare(torch.tensor([1.009, 100.9, 0.005, -3.4e38]), y, 1e-2, 1e-2, 1.0)
    assert ok.passed  # within atol, within rtol, within atol, finite where the reference is -inf
    same_inf = J.compare(torch.tensor([1.0, 100.0, 0.0, -float("inf")]), y, 1e-2, 1e-2, 1.0)
    assert same_inf.status == J.INCORRECT_NUMERICAL and "inf" in same_inf.message
    nan = J.compare(torch.tensor([1.0, float("nan"), 0.0, 0.0]), y, 1e-2, 1e-2, 1.0)
    assert nan.status == J.INCORRECT_NUMERICAL
    bad = J.compare(torch.tensor([1.1, 100.0, 0.0, 0.0]), y, 1e-2, 1e-2, 1.0)
    assert bad.status == J.INCORRECT_NUMERICAL and "max abs error" in bad.message


def test_matched_ratio_rule_for_moe():
    rule = catalog.SPECS["moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048"].judge
    y = torch.randn(1000) * 100
    x = y.clone()
    x[:50] += 1000  # 5% wrong: still >= 90% matched
    assert J.judge_allclose(rule, ["output"], [x.bfloat16()], [y.bfloat16()]).passed
    x[:150] += 1000  # 15% wrong
    assert not J.judge_allclose(rule, ["output"], [x.bfloat16()], [y.bfloat16()]).passed


def test_score_formula():
    def row(status, ours, ref, torch_us):
        return {"status": status, "latency_us": ours, "reference_latency_us": ref,
                "peers": {"torch": torch_us}, "floor_us": 1.0, "floor_fraction": 0.5,
                "speedup_vs_reference": ref / ours}

    result = {"definition": DECODE.name, "workloads": [row("PASSED", 2.0, 20.0, 4.0),
                                                         row("PASSED", 4.0, 20.0, 16.0)]}
    assert report.scores(result) == {"reference": (10.0 + 5.0) / 2, "torch": (2.0 + 4.0) / 2}
    result["workloads"].append({"status": "INCORRECT_NUMERICAL"})
    assert report.scores(result) == {"reference": 0.0, "torch": 0.0}


def test_report_says_what_each_peer_times(tmp_path):
    """A peer that leaves part of the call untimed is labelled partial in the report (the
    committed H200 indexer run has FlashInfer's top-k alone)."""
    import json
    from pathlib import Path

    committed = Path(__file__).resolve().parents[1] / "results/NVIDIA_H200/dsa_topk_indexer_fp8_h64_d128_topk2048_ps64.json"
    text = report.write_markdown([json.loads(committed.read_text())], tmp_path).read_text()
    assert "`flashinfer-topk`: partial" in text and "`torch`: the definition's PyTorch baseline" in text


def test_results_of_two_seeds_sit_side_by_side(tmp_path):
    """A run on another seed's inputs (MoE's routing: issue 15) writes its own JSON, plot and
    report section beside seed 0's; the tables give TFLOP/s and TB/s per workload."""
    import json
    from pathlib import Path

    committed = Path(__file__).resolve().parents[1] / "results/NVIDIA_H200/moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048.json"
    seed0 = json.loads(committed.read_text())
    seed1 = dict(seed0, seed=1, workloads=[dict(r, latency_us=2 * r["latency_us"]) for r in seed0["workloads"]])
    paths = [report.write_result(r, tmp_path) for r in (seed1, seed0)]
    assert [p.name for p in paths] == [f"{seed0['definition']}.seed1.json", f"{seed0['definition']}.json"]
    folder = paths[0].parent
    loaded = report.load_results(folder)
    assert [r.get("seed", 0) for r in loaded] == [0, 1]
    text = report.write_markdown(loaded, folder).read_text()
    assert "## moe: `" in text and "## moe, seed 1: `" in text
    assert (folder / f"{seed0['definition']}.seed1.png").is_file()
    row = max(seed0["workloads"], key=lambda r: r["flops"])
    tflops = f"{row['flops'] / row['latency_us'] / 1e6:.1f}"
    lines = [line for line in report.table(seed0).splitlines() if line.startswith(row["uuid"][:8])]
    assert "TFLOP/s" in report.table(seed0).splitlines()[0] and tflops in lines[0].split()


def test_moe_results_carry_the_float64_oracle_error():
    """MoE's float64 oracle gives each workload's relative error (issue 15): about bf16's
    rounding for a rounded oracle, 1 for zeros; the report shows it beside the matched share."""
    from fibkit.evaluate.runner import oracle_rel_error
    from fibkit.testing import moe_inputs, moe_oracle_of

    spec = catalog.SPECS["moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048"]
    args = moe_inputs(6, 256, 128, 96, "cpu", seed=4, routing="hot")
    want = moe_oracle_of(args)
    assert want.norm() > 0
    assert 0 < oracle_rel_error(spec, args, [want.bfloat16()]) < 4e-3
    assert oracle_rel_error(spec, args, [torch.zeros_like(want)]) == pytest.approx(1.0)
    assert oracle_rel_error(catalog.SPECS[DECODE.name], args, [want]) is None  # no oracle
    row = {"uuid": "0123456789", "axes": {"seq_len": 6}, "status": "PASSED", "latency_us": 10.0,
           "matched_ratio": 0.9876, "oracle_rel_error": 2.5e-3, "floor_us": 5.0, "flops": 1e9, "bytes": 1e7}
    head, line = report.table({"definition": spec.name, "timing_method": "cupti", "workloads": [row]}).splitlines()
    assert head.split()[-2:] == ["matched", "oracle_rel"] and line.split()[-2:] == ["98.8%", "2.5e-03"]


def test_moe_rows_give_the_oracle_error_end_to_end():
    """The runner puts the oracle's relative error in the main solution's row (the torch
    baseline on the smallest workload, on the CPU)."""
    moe = catalog.SPECS["moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048"]
    rows = evaluate(spec=moe, variant="baseline", trials=1)
    assert rows[0]["status"] == "PASSED" and 0 <= rows[0]["oracle_rel_error"] < 1e-2


def test_cache_key_follows_the_synthesis_code(tmp_path, monkeypatch):
    code = tmp_path / "synth.py"
    code.write_text("x = 1\n")
    monkeypatch.setattr(cache_lib, "_INPUT_CODE", [code])
    before = cache_lib.data_tag(DECODE, None)
    code.write_text("x = 2\n")
    assert cache_lib.data_tag(DECODE, None) != before


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


def test_flashinfer_gates_are_the_definitions_and_stay_outside_the_kernel_call():
    """The flashinfer-kernel peer's arguments: the decay g itself and sigmoid(b), computed by
    Contender.arguments (untimed) from the definition's inputs; the other inputs pass as is."""
    from fibkit.evaluate.peers import Contender, _flashinfer_gates
    from fibkit.testing import synthesized

    name = "gdn_prefill_qk4_v8_d128_k_last"
    x = synthesized(name, {"total_seq_len": 9, "num_seqs": 2}, 0, "cpu")
    inputs = [x[n] for n in ["q", "k", "v", "state", "A_log", "a", "dt_bias", "b", "cu_seqlens"]] + [0.0]
    seen = []
    c = Contender("flashinfer-kernel", lambda *args: seen.append(args), False, prepare=_flashinfer_gates)
    args = c.arguments(inputs)
    g = torch.exp(-torch.exp(x["A_log"]) * torch.nn.functional.softplus(x["a"].float() + x["dt_bias"]))
    assert torch.allclose(args[4], g) and torch.allclose(args[5], torch.sigmoid(x["b"].float()))
    assert args[0] is x["q"] and args[3] is x["state"] and args[6] is x["cu_seqlens"]
    assert all(a is b for a, b in zip(Contender("ours", None, True).arguments(inputs), inputs))


def test_flashinfer_peer_absent_without_a_hopper_gpu():
    from fibkit.evaluate.peers import external_peer

    if torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0):
        pytest.skip("a Hopper GPU is here: the peer is available")
    for name in ("flashinfer", "flashinfer-kernel"):
        assert external_peer(name, "gdn_prefill_qk4_v8_d128_k_last") is None
    assert external_peer("flashinfer", "gdn_decode_qk4_v8_d128_k_last") is None


@pytest.mark.parametrize("with_state", [True, False])
def test_flashinfer_decode_gets_its_own_state_and_output(with_state):
    """FlashInfer's decode overwrites the state it is given: its arguments hold a copy (zeros for
    a call without a state) and an output buffer, so the inputs the judge and the other
    contenders see stay as they were."""
    from fibkit.evaluate.peers import _flashinfer_decode_arguments
    from fibkit.testing import gdn_decode_inputs

    inputs = gdn_decode_inputs(3, "cpu", seed=4, with_state=with_state)
    args = _flashinfer_decode_arguments(*inputs)
    state = args[3]
    assert state.shape == (3, 8, 128, 128) and state.dtype == torch.float32
    if with_state:
        assert state.data_ptr() != inputs[3].data_ptr() and torch.equal(state, inputs[3])
    else:
        assert (state == 0).all()
    assert args[9].shape == (3, 1, 8, 128) and args[9].dtype == torch.bfloat16
    assert all(a is b for a, b in zip(args[:3] + args[4:9], inputs[:3] + inputs[4:9]))


def test_library_peer_availability_is_asked_per_definition(monkeypatch):
    """One library can run one definition here and not another (different GPUs, wheels)."""
    from fibkit.evaluate import peers

    fn = lambda *args: args
    monkeypatch.setitem(peers._LIBRARY_PEERS, "lib", {
        "runs": peers.LibraryPeer(fn, None, lambda: True),
        "absent": peers.LibraryPeer(fn, None, lambda: False)})
    peer = peers.external_peer("lib", "runs")
    assert peer is not None and peer.fn is fn and peer.name == "lib" and not peer.dps
    assert peers.external_peer("lib", "absent") is None
    assert peers.external_peer("lib", "not implemented") is None
    assert peers.external_peer("no such library", "runs") is None


def test_peers_in_table_order_and_only_the_chosen_ones(tmp_path):
    from fibkit.evaluate.peers import contenders, external_peer, peer_names
    from fibkit.evaluate.runner import RunOptions
    from fibkit.templates import write_template

    definition = catalog.load_definition(DECODE.name)
    libraries = [n for n in DECODE.peers if n != "torch" and external_peer(n, DECODE.name)]

    def names(**kw):
        main, peers = contenders(DECODE, definition, RunOptions(device="cpu", **kw))
        return main.name, [p.name for p in peers]

    assert peer_names(DECODE, False) == ["torch", "fla", "flashinfer"]
    assert peer_names(DECODE, False, "baseline") == ["fla", "flashinfer"]
    assert names() == ("ours", ["torch", *libraries])
    assert names(peer_names=("torch",)) == ("ours", ["torch"])
    assert names(peers=False) == names(timing=False) == ("ours", [])
    assert names(variant="baseline") == ("ours", libraries)  # the baseline is not its own peer
    folder = write_template(DECODE, tmp_path / "mine")
    assert names(solution=folder) == ("yours", ["fibkit", "torch", *libraries])
    assert names(solution=folder, peer_names=("fibkit",)) == ("yours", ["fibkit"])
