"""Running our solutions through the official package: flashinfer_bench.Benchmark (0.1.2),
and its compute-sanitizer and ncu helpers.

0.1.2 predates the contest's DSA indexer evaluator: it would feed random bytes as the fp8 K
cache (NaN scales) and compare indices position by position. `install` registers an evaluator
for the definitions the catalog judges as a set (`Judge.kind == "topk_set"`): it draws their
random inputs with the catalog's own recipes (`random_inputs`: the re-packed K cache) and judges
the answer as a set, as the contest's final evaluator does. flashinfer-bench evaluates in a spawned worker process: `install` also swaps
the worker's entry function for `_worker_main`, which spawn pickles by reference, so the
worker imports this module and registers the evaluator there too.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Dict, List, Optional

_ORIGINAL_WORKER: list = []


def _worker_main(*args, **kwargs):
    install()
    return _ORIGINAL_WORKER[0](*args, **kwargs)


def install() -> None:
    import torch
    from flashinfer_bench.bench.evaluators import default as fib_default
    from flashinfer_bench.bench.evaluators import registry
    from flashinfer_bench.bench.utils import make_eval
    from flashinfer_bench.data import Correctness, EvaluationStatus

    from fibkit import catalog
    from fibkit.evaluate import judge as judging
    from fibkit.evaluate.inputs import poisoned_outputs

    from flashinfer_bench.bench.runner import persistent_runner

    if any(getattr(c, "_fibkit", False) for c in registry._EVALUATORS):
        return
    if not _ORIGINAL_WORKER:
        _ORIGINAL_WORKER.append(persistent_runner._persistent_worker_main)
        persistent_runner._persistent_worker_main = _worker_main

    class SetJudgedIndexerEvaluator(fib_default.DefaultEvaluator):
        _fibkit = True

        @classmethod
        def can_evaluate(cls, definition) -> bool:
            spec = catalog.SPECS.get(definition.name)
            return spec is not None and spec.judge.kind == "topk_set"

        @classmethod
        def build_baseline(cls, definition, workload, cfg, device, trace_set_root=None):
            base = super().build_baseline(definition, workload, cfg, device, trace_set_root)
            names = list(definition.inputs)
            recipes = {names.index(n): make for n, make in catalog.SPECS[definition.name].random_inputs.items()
                       if workload.inputs[n].type == "random"}
            if recipes:
                from flashinfer_bench.compile import BuilderRegistry
                from flashinfer_bench.bench.evaluators.utils import normalize_result

                ref = BuilderRegistry.get_instance().build_reference(definition)
                gen = torch.Generator(device=device).manual_seed(0)
                for j, inp in enumerate(base.inputs):
                    for i, make in recipes.items():
                        inp[i] = make(tuple(inp[i].shape), gen, device)
                    base.outputs[j] = normalize_result(definition, ref(*inp), device)
            return base

        @classmethod
        def check_correctness(cls, definition, sol_runnable, inputs, ref_outputs, cfg, log_path, device):
            rule = catalog.resolve(definition.name).judge
            worst = judging.Verdict()
            for inp, ref in zip(inputs, ref_outputs):
                try:
                    axes = definition.get_axes_values_from_inputs(inp)
                    outs = poisoned_outputs(definition, axes, device)
                    with torch.no_grad():
                        sol_runnable(*inp, *outs)
                    torch.cuda.synchronize(device)
                except Exception:
                    return None, make_eval(status=EvaluationStatus.RUNTIME_ERROR, device=device,
                                           log_path=log_path)
                worst = worst.merge(judging.judge(rule, definition, inp, outs, ref))
            correctness = Correctness(max_relative_error=worst.max_rel, max_absolute_error=worst.max_abs)
            if worst.passed:
                return correctness, None
            status = EvaluationStatus(worst.status)
            return correctness, make_eval(status=status, device=device, log_path=log_path,
                                          correctness=correctness, extra_msg=worst.message)

    registry._EVALUATORS.insert(0, SetJudgedIndexerEvaluator)


def run_benchmark(definitions: List[str], variant: Optional[str], seed: int, quick: bool,
                  dataset: Optional[Path] = None, limit: Optional[int] = None,
                  solution: Optional[Path] = None) -> Dict[str, Dict[str, str]]:
    """Statuses {definition: {uuid: status}} from flashinfer_bench.Benchmark over our solution
    folders (or the user's solution), on a dataset folder (written to a temporary one when none
    is given), with the contest's tolerances, warm-up and iteration counts."""
    install()
    from flashinfer_bench import Benchmark, BenchmarkConfig, TraceSet

    from fibkit import catalog
    from fibkit.dataset import official_workloads
    from fibkit.dataset.writer import write_dataset
    from fibkit.evaluate import solution as solution_lib
    from fibkit.evaluate.runner import RunOptions, select

    statuses: Dict[str, Dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="fibkit-harness-") as tmp:
        root = Path(dataset) if dataset else Path(tmp) / "dataset"
        for name in definitions:
            spec = catalog.resolve(name)
            picks = {w.uuid for w in select(spec, official_workloads(spec.name),
                                            RunOptions(quick=quick, limit=limit))}
            if dataset is None:
                write_dataset(root, seed, [spec.name], uuids=picks)
            ts = TraceSet.from_path(str(root))
            ts.definitions = {spec.name: catalog.load_definition(spec.name)}  # our reference code
            sol = (solution_lib.open_solution(solution) if solution is not None
                   else solution_lib.pack(spec.solution_dir(variant)))
            ts.solutions = {spec.name: [sol]}
            ts.workloads = {spec.name: [t for t in ts.workloads.get(spec.name, [])
                                        if t.workload.uuid in picks]}
            j = spec.judge
            warm, iters = spec.timing
            cfg = BenchmarkConfig(atol=j.atol, rtol=j.rtol, warmup_runs=warm, iterations=iters,
                                  num_trials=3, profile_baseline=False,
                                  required_matched_ratio=j.required_ratio if j.required_ratio < 1 else None,
                                  log_dir=str(Path(tmp) / "logs"))
            result = Benchmark(ts, cfg).run_all(dump_traces=False)
            statuses[spec.name] = {t.workload.uuid: t.evaluation.status.value
                                   for t in result.traces.get(spec.name, [])}
    return statuses


def _one_workload_dataset(spec, uuid: Optional[str], seed: int, tmp: Path):
    from flashinfer_bench.data import Workload

    from fibkit.dataset import official_workloads
    from fibkit.dataset.writer import workload_record, write_dataset

    wls = official_workloads(spec.name)
    wl = next((w for w in wls if w.uuid == uuid), None) if uuid else min(
        wls, key=lambda w: w.axes.get(spec.size_axis, 0))
    if wl is None:
        raise KeyError(f"{spec.alias}: no workload {uuid}")
    write_dataset(tmp, seed, [spec.name], uuids={wl.uuid})
    return Workload.model_validate(workload_record(wl)["workload"])


def _run_tool(tool, definition: str, variant: Optional[str], uuid: Optional[str], seed: int,
              solution=None, **options) -> str:
    """Run one of flashinfer-bench's agent tools on one workload (default: the smallest) of a
    one-workload dataset written to a temporary folder, on fibkit's variant or `solution`."""
    from fibkit import catalog
    from fibkit.evaluate import solution as solution_lib

    spec = catalog.resolve(definition)
    sol = solution if solution is not None else solution_lib.pack(spec.solution_dir(variant))
    with tempfile.TemporaryDirectory(prefix="fibkit-tool-") as tmp:
        wl = _one_workload_dataset(spec, uuid, seed, Path(tmp))
        return tool(sol, wl, trace_set_path=tmp, **options)


def sanitize(definition: str, variant: Optional[str], uuid: Optional[str], seed: int,
             tools: Optional[List[str]] = None, solution=None) -> str:
    from flashinfer_bench.agents import flashinfer_bench_run_sanitizer

    return _run_tool(flashinfer_bench_run_sanitizer, definition, variant, uuid, seed, solution,
                     sanitizer_types=tools)


def profile(definition: str, variant: Optional[str], uuid: Optional[str], seed: int,
            kernel: Optional[str] = None, solution=None) -> str:
    from flashinfer_bench.agents import flashinfer_bench_run_ncu

    return _run_tool(flashinfer_bench_run_ncu, definition, variant, uuid, seed, solution, kernel_name=kernel)
