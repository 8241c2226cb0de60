"""Results in the ecosystem's own format: FlashInfer-Trace records.

Each (solution, workload) that an evaluation ran becomes a `flashinfer_bench.data.Trace`: the
workload, the solution's name and an Evaluation (status, correctness, performance, environment,
the failure message as its log). `write_traces` lays them out as a TraceSet folder, with the
definitions and solutions they name, that `flashinfer_bench.TraceSet.from_path` loads and the
FlashInfer Trace Viewer shows:

    <out>/definitions/<op_type>/<definition>.json
    <out>/solutions/<op_type>/<definition>/<solution>.json
    <out>/traces/<op_type>/<definition>.jsonl
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Iterable, Optional


def trace_record(definition, solution, workload: dict, outcome, reference_us: Optional[float],
                 hardware: str, timed: bool) -> dict:
    """One Trace as JSON data. `outcome` has `.verdict` and `.latency_us`."""
    from flashinfer_bench.data import Correctness, Environment, Evaluation, Performance, Trace

    from fibkit.evaluate import judge as judging
    from fibkit.evaluate.peers import versions

    v = outcome.verdict
    correctness = performance = None
    if v.status in (judging.PASSED, judging.INCORRECT_NUMERICAL):
        correctness = Correctness(max_absolute_error=_non_negative(v.max_abs),
                                  max_relative_error=_non_negative(v.max_rel),
                                  extra={"matched_ratio": v.matched_ratio})
    log = v.message
    if v.passed:
        lat = outcome.latency_us
        if timed and lat:
            ref = reference_us or 0.0
            performance = Performance(latency_ms=lat / 1e3, reference_latency_ms=ref / 1e3,
                                      speedup_factor=ref / lat if ref else 0.0)
        else:
            performance = Performance()  # the schema wants one; `fibkit check` does not time
            log = "correctness only (fibkit check): not timed"
    evaluation = Evaluation(status=v.status, environment=Environment(hardware=hardware, libs=versions()),
                            timestamp=datetime.now().isoformat(timespec="seconds"), log=log or "",
                            correctness=correctness, performance=performance)
    trace = Trace(definition=definition.name, workload=workload, solution=solution.name,
                  evaluation=evaluation)
    return json.loads(trace.model_dump_json())


def _non_negative(x: float) -> float:
    return x if x != x or x >= 0 else 0.0  # NaN stays NaN (the schema allows it)


def write_traces(out: Path, results: Iterable[dict]) -> Path:
    """Write each result's traces (`_traces`), its definition and the solutions they name
    (`_solutions`) under `out`."""
    from fibkit import catalog
    from fibkit.report import result_stem

    out = Path(out)
    for result in results:
        spec = catalog.SPECS[result["definition"]]
        d = out / "definitions" / spec.op_type / f"{spec.name}.json"
        d.parent.mkdir(parents=True, exist_ok=True)
        d.write_text(json.dumps(catalog.definition_dict(spec.name), indent=2) + "\n")
        names = {t["solution"] for t in result["_traces"]}
        for name in sorted(names):
            sol = result["_solutions"].get(name)
            if sol is not None:
                p = out / "solutions" / spec.op_type / spec.name / f"{_safe(name)}.json"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(sol.model_dump_json(indent=2) + "\n")
        # Another seed's inputs: traces of their own beside seed 0's, named as its results are.
        t = out / "traces" / spec.op_type / f"{result_stem(result)}.jsonl"
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_text("".join(json.dumps(r) + "\n" for r in result["_traces"]))
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
