"""`--gpus N`: workloads dealt over N processes come back merged as one process would give them
(run here with two CPU workers)."""
from fibkit import catalog
from fibkit.evaluate.runner import RunOptions, evaluate_definition
from fibkit.evaluate.spread import evaluate_spread


def test_two_workers_merge_like_one(tmp_path):
    spec = catalog.SPECS["gdn_decode_qk4_v8_d128_k_last"]
    opts = RunOptions(device="cpu", timing=False, trials=1, variant="baseline", smallest=5,
                      cache_dir=tmp_path)
    one = evaluate_definition(spec, opts)
    spread, = evaluate_spread([spec], opts, ["cpu", "cpu"])
    assert [r["uuid"] for r in spread["workloads"]] == [r["uuid"] for r in one["workloads"]]
    assert [r["status"] for r in spread["workloads"]] == ["PASSED"] * 5
    assert [r["max_abs_error"] for r in spread["workloads"]] == [r["max_abs_error"] for r in one["workloads"]]
    assert spread["devices"] == ["cpu", "cpu"]
