"""The evaluation of one definition: for each workload, check a solution on fresh inputs
against the reference, then time it, the reference and the peers on the same inputs, and
compute the floor. Everything definition-specific comes from fibkit.catalog."""
from __future__ import annotations

import importlib
import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from fibkit import catalog
from fibkit.catalog import DefSpec
from fibkit.dataset import WorkloadSpec, official_workloads
from fibkit.dataset.writer import blob_tensors
from fibkit.evaluate import judge as judging
from fibkit.evaluate import peers as peer_lib
from fibkit.evaluate import solution as solution_lib
from fibkit.evaluate import timing
from fibkit.evaluate.cache import ReferenceCache
from fibkit.evaluate.inputs import as_output_list, has_random_inputs, make_inputs, poisoned_outputs


@dataclass
class RunOptions:
    seed: int = 0
    trials: int = 3
    timing: bool = True
    quick: bool = False
    variant: Optional[str] = None
    dataset: Optional[Path] = None
    device: str = "cuda"
    warmup: int = 10
    iters: int = 50
    cache_dir: Optional[Path] = None
    peers: bool = True
    limit: Optional[int] = None  # first N workloads (after --quick selection)
    smallest: Optional[int] = None  # the N cheapest workloads (interpreter checks)
    verbose: bool = False
    solution_dir: Optional[Path] = None  # evaluate this folder instead of the variant's
    shard: Optional[Tuple[int, int]] = None  # (i, n): only workloads i, i + n, ... (one GPU of n)


class WorkloadSource:
    """The workloads of a definition and their stored inputs: from a dataset folder (a real one
    or one `fibkit dataset` wrote) when given, else the official list with synthesized blobs."""

    def __init__(self, spec: DefSpec, dataset: Optional[Path], seed: int):
        self.spec, self.dataset, self.seed = spec, dataset, seed
        self._files: Dict[str, Dict[str, tuple]] = {}

    def workloads(self) -> List[WorkloadSpec]:
        if self.dataset is None:
            return official_workloads(self.spec.name)
        path = self.dataset / "workloads" / self.spec.op_type / f"{self.spec.name}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"dataset {self.dataset} has no {path.relative_to(self.dataset)}")
        out = []
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            w = json.loads(line)["workload"]
            blobs = {n: (i["path"], i["tensor_key"]) for n, i in w["inputs"].items() if i["type"] == "safetensors"}
            scalars = {n: i["value"] for n, i in w["inputs"].items() if i["type"] == "scalar"}
            self._files[w["uuid"]] = blobs
            out.append(WorkloadSpec(self.spec.name, w["uuid"], w["axes"], scalars, tuple(blobs)))
        return out

    def blobs(self, wl: WorkloadSpec) -> Dict[str, torch.Tensor]:
        if self.dataset is None:
            return blob_tensors(wl, self.seed)
        from safetensors.torch import load_file

        loaded: Dict[str, dict] = {}
        out = {}
        for name, (rel, key) in self._files[wl.uuid].items():
            if rel not in loaded:
                loaded[rel] = load_file(str(self.dataset / rel))
            out[name] = loaded[rel][key]
        return out


def select(spec: DefSpec, workloads: List[WorkloadSpec], opts: RunOptions) -> List[WorkloadSpec]:
    def size(w):
        return tuple(w.axes.get(a, 0) for a in [spec.size_axis, *sorted(w.axes)])

    if opts.smallest:
        workloads = sorted(workloads, key=size)[: opts.smallest]
    if opts.quick:
        ordered = sorted(workloads, key=size)
        n = min(spec.quick_count, len(ordered))
        picks = sorted({round(i * (len(ordered) - 1) / max(n - 1, 1)) for i in range(n)})
        workloads = [ordered[i] for i in picks]
    workloads = workloads[: opts.limit] if opts.limit else workloads
    return workloads[opts.shard[0]::opts.shard[1]] if opts.shard else workloads


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def call_solution(fn: Callable, dps: bool, definition, axes, inputs, device):
    """Run a solution once; returns (outputs, error message)."""
    try:
        with torch.no_grad():
            if dps:
                outs = poisoned_outputs(definition, axes, device)
                fn(*inputs, *outs)
            else:
                outs = as_output_list(fn(*inputs), len(definition.outputs))
                if outs is None:
                    return None, "value-returning solution returned the wrong number of outputs"
        _sync(device)
        return outs, ""
    except Exception as e:  # a crashing solution is a verdict, not our crash
        return None, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"


def gpu_name(device) -> str:
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return "cpu"


def evaluate_definition(spec: DefSpec, opts: RunOptions, progress=None) -> dict:
    definition = catalog.load_definition(spec.name)
    variant = opts.variant or spec.default_variant
    device = opts.device
    reference = importlib.import_module(f"fibkit.references.{spec.name}").run
    source = WorkloadSource(spec, opts.dataset, opts.seed)
    workloads = select(spec, source.workloads(), opts)
    data_tag = "dataset:" + str(opts.dataset) if opts.dataset else "synth:v1"
    cache = ReferenceCache(opts.cache_dir, catalog.reference_source(spec), data_tag)
    gpu = gpu_name(device)

    sol = solution_lib.load(opts.solution_dir or spec.solution_dir(variant), definition)
    dps = sol.metadata.destination_passing_style
    peer_fns: Dict[str, tuple] = {}
    if opts.peers and opts.timing:
        for name in spec.peers:
            if name == "torch":
                if variant != "baseline":
                    base = solution_lib.load(spec.solution_dir("baseline"), definition)
                    peer_fns["torch"] = (base, base.metadata.destination_passing_style)
            else:
                fn = peer_lib.external_peer(name, spec.name)
                if fn is not None:
                    peer_fns[name] = (fn, False)

    rows = []
    bar = progress(total=len(workloads), desc=spec.alias, unit="wl", leave=False) if progress else None
    for wl in workloads:
        blobs = source.blobs(wl)
        fresh_trials = has_random_inputs(definition, wl)
        verdict, kept, kept_refs = judging.Verdict(), None, None
        for trial in range(opts.trials):
            t = trial if fresh_trials else 0
            inputs = make_inputs(definition, wl, blobs, seed=opts.seed, trial=t, device=device)
            refs = cache.outputs(spec.name, wl.uuid, opts.seed, t,
                                 lambda: as_output_list(reference(*inputs), len(definition.outputs)),
                                 device)
            outs, err = call_solution(sol, dps, definition, wl.axes, inputs, device)
            v = (judging.Verdict(judging.RUNTIME_ERROR, message=err) if outs is None
                 else judging.judge(spec.judge, definition, inputs, outs, refs))
            verdict = verdict.merge(v)
            if trial == 0:
                kept, kept_refs = inputs, refs
            else:
                del inputs
            if not verdict.passed:
                break
        row: Dict[str, Any] = {
            "uuid": wl.uuid, "axes": dict(wl.axes), "status": verdict.status,
            "max_abs_error": verdict.max_abs, "max_rel_error": verdict.max_rel,
            "matched_ratio": verdict.matched_ratio,
        }
        if verdict.message:
            row["message"] = verdict.message
        if opts.verbose and not verdict.passed:
            print(f"  {spec.alias} {wl.uuid}: {verdict.status}: {verdict.message}")
        if opts.timing:
            named = dict(zip(definition.inputs, kept))
            cost = spec.cost(wl.axes, named)
            row["floor_us"] = cost.floor_us
            row["bytes"], row["flops"] = cost.bytes, cost.flops
            if verdict.passed:
                args = list(kept) + (poisoned_outputs(definition, wl.axes, device) if dps else [])
                row["latency_us"] = timing.time_us(sol, args, opts.warmup, opts.iters)
                warm, iters = spec.reference_timing
                row["reference_latency_us"] = cache.latency(
                    spec.name, wl.uuid, opts.seed, gpu, lambda args=kept: timing.time_us(reference, args, warm, iters))
                row["speedup_vs_reference"] = row["reference_latency_us"] / row["latency_us"]
                row["floor_fraction"] = cost.floor_us / row["latency_us"]
            row["peers"], row["peer_status"] = {}, {}
            if "torch" in spec.peers and variant == "baseline" and "latency_us" in row:
                row["peers"]["torch"], row["peer_status"]["torch"] = row["latency_us"], "PASSED"
            for name, (fn, peer_dps) in peer_fns.items():
                outs, err = call_solution(fn, peer_dps, definition, wl.axes, kept, device)
                pv = (judging.Verdict(judging.RUNTIME_ERROR, message=err) if outs is None
                      else judging.judge(spec.judge, definition, kept, outs, kept_refs))
                row["peer_status"][name] = pv.status
                if pv.passed:
                    pargs = list(kept) + (poisoned_outputs(definition, wl.axes, device) if peer_dps else [])
                    row["peers"][name] = timing.time_us(fn, pargs, opts.warmup, opts.iters)
        rows.append(row)
        del kept, kept_refs
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return {
        "gpu": gpu,
        "definition": spec.name,
        "solution": sol.metadata.solution_name,
        "variant": variant,
        "timing_method": timing.method() if opts.timing else None,
        "seed": opts.seed,
        "versions": peer_lib.versions(),
        "workloads": rows,
    }
