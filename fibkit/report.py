"""Tables, the markdown report and the plots of `fibkit bench` results."""
from __future__ import annotations

import json
import re
from pathlib import Path
from statistics import mean
from typing import Dict, List, Optional

from fibkit import catalog


def _fmt(x, digits=1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def label(result: dict) -> str:
    """The solution's column name: `yours` for a user's solution, `ours` for fibkit's."""
    return "yours" if result.get("user_solution") else "ours"


def _latency_of(row: dict, other: str) -> Optional[float]:
    return row.get("reference_latency_us") if other == "reference" else row.get("peers", {}).get(other)


def scores(result: dict) -> Dict[str, Optional[float]]:
    """The contest's score of the solution against each other contender (the reference, each
    peer): the arithmetic mean over workloads of other latency / solution latency, and 0 if any
    workload failed. Workloads where the other has no latency (it failed) are left out."""
    rows = result["workloads"]
    failed = any(r["status"] != "PASSED" for r in rows)
    others = ["reference"] + sorted({p for r in rows for p in r.get("peers", {})})
    out: Dict[str, Optional[float]] = {}
    for other in others:
        ratios = [_latency_of(r, other) / r["latency_us"] for r in rows
                  if r.get("latency_us") and _latency_of(r, other)]
        out[other] = 0.0 if failed else (mean(ratios) if ratios else None)
    return out


def summary(result: dict) -> Dict[str, Optional[float]]:
    """Counts and means over the timed workloads (the scores against others: `scores`)."""
    rows = result["workloads"]
    timed = [r for r in rows if r.get("latency_us")]
    return {
        "workloads": len(rows),
        "passed": sum(r["status"] == "PASSED" for r in rows),
        "mean_latency_us": mean(r["latency_us"] for r in timed) if timed else None,
        "mean_floor_us": mean(r["floor_us"] for r in timed) if timed else None,
        "mean_floor_fraction": mean(r["floor_fraction"] for r in timed) if timed else None,
    }


def _errors_table(result: dict) -> List[List[str]]:
    """Rows of an untimed run (check): status, errors, and why a workload failed."""
    spec = catalog.SPECS[result["definition"]]
    oracle = any("oracle_rel_error" in r for r in result["workloads"])
    lines = [["uuid", spec.size_axis, "status", "max_abs_err", "max_rel_err", "matched"] +
             ["oracle_rel"] * oracle + ["why"]]
    for r in sorted(result["workloads"], key=lambda r: r["axes"].get(spec.size_axis, 0)):
        why = (r.get("message") or "").strip().splitlines()
        lines.append([r["uuid"][:8], str(r["axes"].get(spec.size_axis)), r["status"],
                      f"{r['max_abs_error']:.3g}", f"{r['max_rel_error']:.3g}", f"{r['matched_ratio']:.2%}"] +
                     [_fmt_sci(r.get("oracle_rel_error"))] * oracle + [why[0][:100] if why else ""])
    return lines


def _align(lines: List[List[str]]) -> str:
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)).rstrip() for row in lines)


def table(result: dict) -> str:
    """A plain-text table, one line per workload."""
    if not result.get("timing_method"):
        return _align(_errors_table(result))
    spec = catalog.SPECS[result["definition"]]
    peers = sorted({p for r in result["workloads"] for p in r.get("peers", {})})
    # The accuracy beside the verdict, where the rule lets elements fail (matched: the worst
    # trial's share within it) or the catalog has a float64 oracle (its relative error).
    matched = spec.judge.required_ratio < 1
    oracle = any("oracle_rel_error" in r for r in result["workloads"])
    head = ["uuid", spec.size_axis, "status", f"{label(result)}_us", "ref_us", "speedup"] + \
           [f"{p}_us" for p in peers] + ["floor_us", "of_floor", "TFLOP/s", "TB/s"] + \
           ["matched"] * matched + ["oracle_rel"] * oracle
    lines = [head]
    for r in sorted(result["workloads"], key=lambda r: r["axes"].get(spec.size_axis, 0)):
        lines.append([r["uuid"][:8], str(r["axes"].get(spec.size_axis)), r["status"],
                      _fmt(r.get("latency_us"), 2), _fmt(r.get("reference_latency_us"), 1),
                      _fmt(r.get("speedup_vs_reference"), 1)] +
                     [_fmt(r.get("peers", {}).get(p), 2) for p in peers] +
                     [_fmt(r.get("floor_us"), 2),
                      "-" if r.get("floor_fraction") is None else f"{r['floor_fraction']:.0%}",
                      _rate(r, "flops"), _rate(r, "bytes")] +
                     [_percent(r.get("matched_ratio"))] * matched +
                     [_fmt_sci(r.get("oracle_rel_error"))] * oracle)
    return _align(lines)


def _percent(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _fmt_sci(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1e}"


def _rate(row: dict, amount: str) -> str:
    """A workload's useful FLOP or bytes (the floor's counts) per second of ours, in units of
    10^12: TFLOP/s, TB/s."""
    latency = row.get("latency_us")
    if not latency or row.get(amount) is None:
        return "-"
    return _fmt(row[amount] / latency / 1e6, 1 if amount == "flops" else 2)


def summary_line(result: dict) -> str:
    s = summary(result)
    parts = [f"{result_title(result)} ({result['solution']}): {s['passed']}/{s['workloads']} passed"]
    if s["mean_latency_us"] is not None:
        parts.append(f"mean {s['mean_latency_us']:.2f} us (floor {s['mean_floor_us']:.2f} us, "
                     f"{s['mean_floor_fraction']:.0%} of floor on average)")
    sc = score_text(result)
    if sc:
        parts.append(sc)
    return "; ".join(parts)


def score_text(result: dict) -> str:
    """`score vs reference 12.3, vs torch 40.1, ...` (empty when nothing was timed)."""
    if not result.get("timing_method"):  # a check: nothing was timed
        return ""
    found = [f"{k} {v:.2f}" for k, v in scores(result).items() if v is not None]
    return "contest score (mean speedup; 0 if any workload fails): vs " + ", ".join(found) if found else ""


def gpu_dirname(gpu: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", gpu).strip("_") or "unknown"


def results_dir(out_root: Path, result: dict) -> Path:
    """results/<gpu>/ for fibkit's solutions, results/<gpu>/<solution name>/ for a user's (so a
    user's run never overwrites fibkit's committed results)."""
    d = Path(out_root) / gpu_dirname(result["gpu"])
    return d / _safe_name(result["solution"]) if result.get("user_solution") else d


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "solution"


def result_stem(result: dict) -> str:
    """`<definition>` for inputs of seed 0, `<definition>.seed<N>` for another seed's inputs
    (a size can be judged on more than one routing: MoE's, issue 15)."""
    seed = result.get("seed", 0)
    return result["definition"] + (f".seed{seed}" if seed else "")


def result_title(result: dict) -> str:
    """The definition's alias, and the seed where it is not 0."""
    seed = result.get("seed", 0)
    return catalog.SPECS[result["definition"]].alias + (f", seed {seed}" if seed else "")


def write_result(result: dict, out_root: Path) -> Path:
    d = results_dir(out_root, result)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{result_stem(result)}.json"
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    path.write_text(json.dumps(public, indent=1) + "\n")
    return path


def load_results(d: Path) -> List[dict]:
    """Every result JSON in a results folder (one per definition and seed), in catalog order,
    then by seed."""
    order = {name: k for k, name in enumerate(catalog.SPECS)}
    found = [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))]
    found = [r for r in found if isinstance(r, dict) and r.get("definition") in order]
    return sorted(found, key=lambda r: (order[r["definition"]], r.get("seed", 0)))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = catalog.SPECS[result["definition"]]
    rows = sorted([r for r in result["workloads"] if r.get("floor_us")],
                  key=lambda r: r["axes"].get(spec.size_axis, 0))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    x = [r["axes"].get(spec.size_axis, 0) for r in rows]
    series = {label(result): [r.get("latency_us") for r in rows], "floor": [r["floor_us"] for r in rows]}
    for p in sorted({p for r in rows for p in r.get("peers", {})}):
        if p == "torch" and result.get("variant") == "baseline":
            continue  # ours is the torch baseline
        series[p] = [r.get("peers", {}).get(p) for r in rows]
    for name, ys in series.items():
        pts = [(a, b) for a, b in zip(x, ys) if b]
        if pts:
            ax.plot(*zip(*pts), "o" if name != "floor" else "--", ms=3, label=name,
                    lw=1 if name == "floor" else 0)
    ax.set_xscale("log" if max(x or [1]) > 20 * max(1, min(x or [1])) else "linear")
    ax.set_yscale("log")
    ax.set_xlabel(spec.size_axis)
    ax.set_ylabel("latency (us), CUPTI span, cold L2")
    ax.set_title(f"{result_title(result)} on {result['gpu']}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timing_text(result: dict) -> str:
    t = result.get("timing")
    if not t:
        return "the median over the first trial's inputs (measured before fibkit timed every trial)"
    return (f"the mean over {t['trials']} trials of each trial's median ({t['warmup']} warm-up runs, "
            f"{t['iterations']} timed iterations)")


def write_markdown(results: List[dict], d: Path) -> Path:
    """REPORT.md (and one plot per definition) in the results folder d."""
    gpu = results[0]["gpu"]
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    r0 = results[0]
    title = f"# {r0['solution']} on {gpu}" if r0.get("user_solution") else f"# fibkit bench on {gpu}"
    lines = [title, ""]
    lines += [f"Timing: {r0.get('timing_method')}; versions: " +
              ", ".join(f"{k} {v}" for k, v in r0.get("versions", {}).items()), ""]
    if r0.get("user_solution"):
        lines += [f"Solution: `{r0['user_solution']}`, in the `yours` column; `fibkit` is fibkit's "
                  "default solution, timed on the same inputs in the same run.", ""]
    lines += ["Score: the contest's, per definition the mean over workloads of (other latency / "
              "solution latency), 0 if any workload fails.", ""]
    named = sorted({p for r in results for row in r["workloads"] for p in row.get("peers", {})})
    if named:
        from fibkit.evaluate.peers import DESCRIPTIONS

        lines += ["Peers: " + "; ".join(f"`{p}`: {DESCRIPTIONS.get(p, 'a library peer')}" for p in named) + ".", ""]
    lines += ["| definition | solution | passed | mean us | mean floor us | of floor | score |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        s = summary(r)
        score_txt = ", ".join(f"vs {k} {v:.2f}" for k, v in scores(r).items() if v is not None)
        lines.append(f"| {result_title(r)} | {r['solution']} | {s['passed']}/{s['workloads']} | "
                     f"{_fmt(s['mean_latency_us'], 2)} | {_fmt(s['mean_floor_us'], 2)} | "
                     f"{'-' if s['mean_floor_fraction'] is None else format(s['mean_floor_fraction'], '.0%')} | "
                     f"{score_txt or '-'} |")
    for r in results:
        title = result_title(r)
        png = d / f"{result_stem(r)}.png"
        plot(r, png)
        lines += ["", f"## {title}: `{r['definition']}`", "", f"Timed as {timing_text(r)}.", "",
                  f"![{title}]({png.name})", "", "```", table(r), "```"]
    path = d / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path
