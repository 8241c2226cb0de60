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


def summary(result: dict) -> Dict[str, Optional[float]]:
    rows = result["workloads"]
    timed = [r for r in rows if r.get("latency_us")]
    out: Dict[str, Optional[float]] = {
        "workloads": len(rows),
        "passed": sum(r["status"] == "PASSED" for r in rows),
        "mean_latency_us": mean(r["latency_us"] for r in timed) if timed else None,
        "mean_floor_us": mean(r["floor_us"] for r in timed) if timed else None,
        "mean_speedup_vs_reference": mean(r["speedup_vs_reference"] for r in timed) if timed else None,
        "mean_floor_fraction": mean(r["floor_fraction"] for r in timed) if timed else None,
    }
    peers = sorted({p for r in timed for p in r.get("peers", {})})
    for p in peers:
        both = [r for r in timed if p in r["peers"]]
        out[f"mean_{p}_us"] = mean(r["peers"][p] for r in both) if both else None
        out[f"mean_speedup_vs_{p}"] = mean(r["peers"][p] / r["latency_us"] for r in both) if both else None
    return out


def table(result: dict) -> str:
    """A plain-text table, one line per workload."""
    spec = catalog.SPECS[result["definition"]]
    peers = sorted({p for r in result["workloads"] for p in r.get("peers", {})})
    head = ["uuid", spec.size_axis, "status", "ours_us", "ref_us", "speedup"] + \
           [f"{p}_us" for p in peers] + ["floor_us", "of_floor"]
    lines = [head]
    for r in sorted(result["workloads"], key=lambda r: r["axes"].get(spec.size_axis, 0)):
        lines.append([r["uuid"][:8], str(r["axes"].get(spec.size_axis)), r["status"],
                      _fmt(r.get("latency_us"), 2), _fmt(r.get("reference_latency_us"), 1),
                      _fmt(r.get("speedup_vs_reference"), 1)] +
                     [_fmt(r.get("peers", {}).get(p), 2) for p in peers] +
                     [_fmt(r.get("floor_us"), 2),
                      "-" if r.get("floor_fraction") is None else f"{r['floor_fraction']:.0%}"])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in lines)


def summary_line(result: dict) -> str:
    s = summary(result)
    spec = catalog.SPECS[result["definition"]]
    parts = [f"{spec.alias}: {s['passed']}/{s['workloads']} passed"]
    if s["mean_latency_us"] is not None:
        parts.append(f"mean {s['mean_latency_us']:.2f} us (floor {s['mean_floor_us']:.2f} us, "
                     f"{s['mean_floor_fraction']:.0%} of floor on average)")
        parts.append(f"{s['mean_speedup_vs_reference']:.1f}x vs reference")
        for k, v in s.items():
            if k.startswith("mean_speedup_vs_") and k != "mean_speedup_vs_reference" and v:
                parts.append(f"{v:.2f}x vs {k[len('mean_speedup_vs_'):]}")
    return "; ".join(parts)


def gpu_dirname(gpu: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", gpu).strip("_") or "unknown"


def write_result(result: dict, out_root: Path) -> Path:
    d = Path(out_root) / gpu_dirname(result["gpu"])
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{result['definition']}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def load_results(out_root: Path, gpu: str) -> List[dict]:
    """Every definition's result JSON under out_root for this GPU, in catalog order."""
    d = Path(out_root) / gpu_dirname(gpu)
    found = {p.stem: json.loads(p.read_text()) for p in d.glob("*.json")}
    return [found[name] for name in catalog.SPECS if name in found]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = catalog.SPECS[result["definition"]]
    rows = sorted([r for r in result["workloads"] if r.get("floor_us")],
                  key=lambda r: r["axes"].get(spec.size_axis, 0))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    x = [r["axes"].get(spec.size_axis, 0) for r in rows]
    series = {"ours": [r.get("latency_us") for r in rows], "floor": [r["floor_us"] for r in rows]}
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
    ax.set_title(f"{spec.alias} on {result['gpu']}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(results: List[dict], out_root: Path) -> Path:
    gpu = results[0]["gpu"]
    d = Path(out_root) / gpu_dirname(gpu)
    d.mkdir(parents=True, exist_ok=True)
    lines = [f"# fibkit bench on {gpu}", ""]
    r0 = results[0]
    lines += [f"Timing: {r0.get('timing_method')}; versions: " +
              ", ".join(f"{k} {v}" for k, v in r0.get("versions", {}).items()), ""]
    lines += ["| definition | solution | passed | mean us | mean floor us | of floor | vs reference | vs peers |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        s = summary(r)
        peer_txt = ", ".join(f"{k[len('mean_speedup_vs_'):]} {v:.2f}x" for k, v in s.items()
                             if k.startswith("mean_speedup_vs_") and k != "mean_speedup_vs_reference" and v)
        lines.append(f"| {catalog.SPECS[r['definition']].alias} | {r['solution']} | {s['passed']}/{s['workloads']} | "
                     f"{_fmt(s['mean_latency_us'], 2)} | {_fmt(s['mean_floor_us'], 2)} | "
                     f"{'-' if s['mean_floor_fraction'] is None else format(s['mean_floor_fraction'], '.0%')} | "
                     f"{_fmt(s['mean_speedup_vs_reference'], 1)}x | {peer_txt or '-'} |")
    for r in results:
        alias = catalog.SPECS[r["definition"]].alias
        png = d / f"{r['definition']}.png"
        plot(r, png)
        lines += ["", f"## {alias}: `{r['definition']}`", "", f"![{alias}]({png.name})", "",
                  "```", table(r), "```"]
    path = d / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path
