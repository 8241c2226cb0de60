"""The evaluation of one definition, as the contest's evaluator runs it: for each workload, draw
the trials' inputs, compute the reference outputs, then for the solution and for each peer check
every trial and time every trial (mean over the trials of each trial's median), each within the
time limit. Everything definition-specific comes from fibkit.catalog."""
from __future__ import annotations

import signal
import statistics
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from fibkit import catalog
from fibkit.catalog import DefSpec
from fibkit.evaluate import judge as judging
from fibkit.evaluate import peers as peer_lib
from fibkit.evaluate import timing
from fibkit.evaluate.cache import ReferenceCache, data_tag
from fibkit.evaluate.inputs import has_random_inputs, make_inputs, poisoned_outputs
from fibkit.evaluate.peers import Contender
from fibkit.evaluate.traces import trace_record
from fibkit.evaluate.workloads import WorkloadSource, select

__all__ = ["RunOptions", "evaluate_definition", "WorkloadSource", "select", "call_solution"]

TIMEOUT_S = 300  # the contest's limit on one solution's evaluation of one workload


@dataclass
class RunOptions:
    seed: int = 0
    trials: int = 3
    timing: bool = True
    quick: bool = False
    variant: Optional[str] = None
    solution: Optional[Path] = None  # the user's solution (folder, config.toml, solution.json)
    dataset: Optional[Path] = None
    device: str = "cuda"
    warmup: Optional[int] = None  # None: the contest's figure for the definition (catalog)
    iters: Optional[int] = None
    timeout_s: Optional[float] = TIMEOUT_S
    cache_dir: Optional[Path] = None
    peers: bool = True
    peer_names: Optional[Tuple[str, ...]] = None  # only these peers (None: all of them)
    # Time the reference (its latency is the contest's score's denominator). gdn_prefill's is a
    # per-token Python loop, seconds a call at 8192 tokens: timing it is most of a full run.
    reference_timing: bool = True
    limit: Optional[int] = None  # first N workloads (after --quick selection)
    smallest: Optional[int] = None  # the N cheapest workloads (interpreter checks)
    verbose: bool = False
    shard: Optional[Tuple[int, int]] = None  # (i, n): only workloads i, i + n, ... (one GPU of n)

    def timing_for(self, spec: DefSpec) -> Tuple[int, int]:
        warm, iters = spec.timing
        return (warm if self.warmup is None else self.warmup,
                iters if self.iters is None else self.iters)


class EvaluationTimeout(BaseException):
    """Raised inside a solution that outlives the time limit. A BaseException, so that a
    solution's own `except Exception` cannot swallow it."""


@contextmanager
def deadline(seconds: Optional[float]):
    """Interrupt the block after `seconds` (SIGALRM, main thread only; elsewhere no limit).
    Python code and sleeps are interrupted; a GPU kernel that never ends is not (the contest
    kills its worker process instead)."""
    usable = (seconds and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise EvaluationTimeout(f"evaluation exceeded the {seconds:g} s limit")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def call_solution(c: Contender, definition, rule, axes, inputs, device):
    """Run a contender once on poisoned outputs (or take what it returns); returns
    (outputs, None) or (None, a failing Verdict)."""
    try:
        inputs = c.arguments(inputs)
        with torch.no_grad():
            if c.dps:
                outs = poisoned_outputs(definition, axes, device)
                c.fn(*inputs, *outs)
            else:
                outs = judging.normalize_outputs(c.fn(*inputs), len(definition.outputs), rule)
                if outs is None:
                    return None, judging.Verdict(judging.INCORRECT_SHAPE,
                                                 message="returned the wrong number of outputs")
        _sync(device)
        return outs, None
    except Exception as e:  # a crashing solution is a verdict, not our crash
        return None, judging.Verdict(judging.RUNTIME_ERROR,
                                     message=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")


def gpu_name(device) -> str:
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return "cpu"


@dataclass
class _Trial:
    inputs: List[Any]
    refs: List[torch.Tensor]


@dataclass
class _Outcome:
    verdict: judging.Verdict
    latency_us: Optional[float] = None
    oracle_rel_error: Optional[float] = None  # (the main solution, first trial, where the catalog has an oracle)


def oracle_rel_error(spec: DefSpec, inputs: Sequence[Any], outs: Sequence[torch.Tensor]) -> Optional[float]:
    """||first output - oracle|| / ||oracle|| (0 where both are zero), or None without an oracle."""
    if spec.oracle is None:
        return None
    with torch.no_grad():
        want = spec.oracle(list(inputs)).double()
        diff = (outs[0].double() - want).norm().item()
        scale = want.norm().item()
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


class _Evaluation:
    """One definition's run: its workloads, reference, cache and contenders."""

    def __init__(self, spec: DefSpec, opts: RunOptions):
        self.spec, self.opts, self.device = spec, opts, opts.device
        self.definition = catalog.load_definition(spec.name)
        self.reference = spec.reference()
        self.source = WorkloadSource(spec, opts.dataset, opts.seed)
        self.workloads = select(spec, self.source.workloads(), opts)
        self.cache = ReferenceCache(opts.cache_dir, catalog.reference_source(spec),
                                    data_tag(spec, opts.dataset))
        self.gpu = gpu_name(self.device)
        self.warmup, self.iters = opts.timing_for(spec)
        self.main, self.peers = peer_lib.contenders(spec, self.definition, opts)

    def trials(self, wl) -> List[_Trial]:
        """Each trial's inputs (fresh random ones per trial; stored ones copied for each, as the
        contest loads them per trial) and the reference's outputs on them."""
        blobs = self.source.blobs(wl, self.definition)
        fresh = has_random_inputs(self.definition, wl)
        stored = {b.data_ptr() for b in blobs.values()}
        out, refs_of = [], {}
        for trial in range(self.opts.trials):
            t = trial if fresh else 0
            inputs = make_inputs(self.definition, wl, blobs, seed=self.opts.seed, trial=t, device=self.device)
            # Each trial owns its tensors, so a solution that writes into an input in one trial
            # cannot change what the next trial sees. (Contenders share the trials, as the
            # contest's solutions share its baseline's inputs.)
            inputs = [x.clone() if isinstance(x, torch.Tensor) and x.data_ptr() in stored else x
                      for x in inputs]
            if t not in refs_of:
                refs_of[t] = self.cache.outputs(
                    self.spec.name, wl.uuid, self.opts.seed, t,
                    lambda: judging.normalize_outputs(self.reference(*inputs), len(self.definition.outputs),
                                                      catalog.Judge()), self.device)
            out.append(_Trial(inputs, refs_of[t]))
        return out

    def _time(self, c: Contender, trials: List[_Trial], axes) -> float:
        medians = []
        for tr in trials:
            args = c.arguments(tr.inputs) + (poisoned_outputs(self.definition, axes, self.device) if c.dps else [])
            medians.append(timing.time_us(c.fn, args, self.warmup, self.iters))
        return statistics.mean(medians)

    def run(self, c: Contender, wl, trials: List[_Trial]) -> _Outcome:
        """Check every trial, then (when timing and correct) time every trial, within the
        time limit."""
        try:
            with deadline(self.opts.timeout_s):
                verdict, oracle_rel = judging.Verdict(), None
                for k, tr in enumerate(trials):
                    outs, failed = call_solution(c, self.definition, self.spec.judge, wl.axes,
                                                 tr.inputs, self.device)
                    v = failed or judging.judge(self.spec.judge, self.definition, tr.inputs, outs, tr.refs)
                    verdict = verdict.merge(v)
                    if k == 0 and c is self.main and outs is not None:
                        oracle_rel = oracle_rel_error(self.spec, tr.inputs, outs)
                    del outs
                    if not verdict.passed:
                        return _Outcome(verdict, None, oracle_rel)
                if not self.opts.timing:
                    return _Outcome(verdict, None, oracle_rel)
                try:
                    return _Outcome(verdict, self._time(c, trials, wl.axes), oracle_rel)
                except Exception as e:
                    return _Outcome(judging.Verdict(judging.RUNTIME_ERROR,
                                                    message=f"while timing: {type(e).__name__}: {e}"))
        except EvaluationTimeout as e:
            return _Outcome(judging.Verdict(judging.TIMEOUT, message=str(e)))

    def reference_latency(self, wl, trials: List[_Trial]) -> float:
        key = f"{wl.uuid}:{self.opts.seed}:{self.gpu}:w{self.warmup}i{self.iters}t{len(trials)}"
        return self.cache.latency(self.spec.name, key, lambda: self._time(Contender("reference", self.reference, False), trials, wl.axes))

    def row(self, wl) -> Tuple[Dict[str, Any], List[dict]]:
        """One workload's result row (the solution judged, and when timing: its latency, floor
        and the peers') and the FlashInfer-Trace records of the contenders built from solutions."""
        trials = self.trials(wl)
        main = self.run(self.main, wl, trials)
        v = main.verdict
        row: Dict[str, Any] = {
            "uuid": wl.uuid, "axes": dict(wl.axes), "status": v.status,
            "max_abs_error": v.max_abs, "max_rel_error": v.max_rel, "matched_ratio": v.matched_ratio,
        }
        if main.oracle_rel_error is not None:
            row["oracle_rel_error"] = main.oracle_rel_error
        if v.message:
            row["message"] = v.message
        if self.opts.verbose and not v.passed:
            print(f"  {self.spec.alias} {wl.uuid}: {v.status}: {v.message.splitlines()[0] if v.message else ''}")
        outcomes = {self.main.name: main}
        if self.opts.timing:
            outcomes.update(self._timed_fields(row, wl, trials, main))
        ref_us = row.get("reference_latency_us")
        traces = [trace_record(self.definition, c.solution, self.source.record(wl), outcomes[c.name],
                               ref_us, self.gpu, timed=self.opts.timing)
                  for c in [self.main, *self.peers] if c.solution is not None]
        return row, traces

    def _timed_fields(self, row: Dict[str, Any], wl, trials: List[_Trial], main: _Outcome) -> Dict[str, _Outcome]:
        """Adds the floor, the solution's and the reference's latencies and each peer's outcome
        to `row`; returns the peers' outcomes."""
        cost = self.spec.cost(wl.axes, dict(zip(self.definition.inputs, trials[0].inputs)))
        row["floor_us"], row["bytes"], row["flops"] = cost.floor_us, cost.bytes, cost.flops
        if main.latency_us is not None:
            row["latency_us"] = main.latency_us
            row["floor_fraction"] = cost.floor_us / main.latency_us
            if self.opts.reference_timing:
                row["reference_latency_us"] = self.reference_latency(wl, trials)
                row["speedup_vs_reference"] = row["reference_latency_us"] / main.latency_us
        row["peers"], row["peer_status"], outcomes = {}, {}, {}
        for p in self.peers:
            outcomes[p.name] = outcome = self.run(p, wl, trials)
            row["peer_status"][p.name] = outcome.verdict.status
            if outcome.latency_us is not None:
                row["peers"][p.name] = outcome.latency_us
        return outcomes


def evaluate_definition(spec: DefSpec, opts: RunOptions, progress=None) -> dict:
    ev = _Evaluation(spec, opts)
    rows, traces = [], []
    bar = progress(total=len(ev.workloads), desc=spec.alias, unit="wl", leave=False) if progress else None
    try:
        for wl in ev.workloads:
            row, wl_traces = ev.row(wl)
            rows.append(row)
            traces += wl_traces
            if bar:
                bar.update(1)
    finally:
        if bar:
            bar.close()  # also on an error, so that its message starts a clean line
    return {
        "gpu": ev.gpu,
        "definition": spec.name,
        "solution": ev.main.solution.name,
        "variant": None if opts.solution else spec.variant_for(opts.variant, opts.device),
        "user_solution": str(opts.solution) if opts.solution else None,
        "timing_method": timing.method() if opts.timing else None,
        "timing": {"warmup": ev.warmup, "iterations": ev.iters, "trials": opts.trials} if opts.timing else None,
        "seed": opts.seed,
        "versions": peer_lib.versions(),
        "workloads": rows,
        # Internal (not written to the results JSON): the FlashInfer-Trace records and the
        # Solutions they name, for traces.write_traces.
        "_traces": traces,
        "_solutions": {c.solution.name: c.solution for c in [ev.main, *ev.peers] if c.solution is not None},
    }
