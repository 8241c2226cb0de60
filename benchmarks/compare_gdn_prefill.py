"""Our GDN prefill beside FlashInfer's Hopper kernel on every official workload, in one run:
each workload's inputs (synthesized as `fibkit bench` does, seed 0, trial 0) judged against
the reference with the contest's rule, then timed the contest way (CUPTI span, cold L2, 1
warm-up, 5 iterations, median) for ours, FlashInfer's kernel alone (gates computed outside
the timed region) and FlashInfer as a whole call. A quicker view than `fibkit bench` (one
trial, no reference or torch timing), for a device call's budget. Prints per-workload rows
and a table by size; the errors (largest |difference| over largest |reference value|) of ours
and of FlashInfer's kernel against the reference.

    python benchmarks/compare_gdn_prefill.py [VARIANT_OR_FOLDER ...]   (default: the default variant)
e.g. `triton cuda`: fibkit's solution variants by name, other solution folders by path.
"""
import statistics
import sys
from pathlib import Path


from fibkit import catalog
from fibkit.evaluate import judge as judging
from fibkit.evaluate.solution import load, pack
from fibkit.evaluate.peers import _flashinfer_gates, _flashinfer_kernel, _flashinfer_prefill
from fibkit.evaluate.timing import method, time_us
from fibkit.evaluate.workloads import WorkloadSource
from fibkit.testing import max_error_of_max, official_inputs, poisoned

NAME = "gdn_prefill_qk4_v8_d128_k_last"
BUCKETS = [(1, 64), (65, 256), (257, 1024), (1025, 4096), (4097, 8191), (8192, 8192)]


def main():
    spec = catalog.SPECS[NAME]
    definition = catalog.load_definition(NAME)
    reference = spec.reference()
    variants = sys.argv[1:] or [spec.default_variant]
    built = {name: load(pack(spec.solution_dir(name) if spec.solution_dir(name).is_dir() else Path(name)),
                        definition) for name in variants}
    rows = []
    print(f"timing: {method()}")
    for wl in WorkloadSource(spec, None, 0).workloads():
        inputs = official_inputs(NAME, wl)
        refs = judging.normalize_outputs(reference(*inputs), 2, spec.judge)
        statuses, times, errs = [], [], []
        for name, fn in built.items():
            outs = poisoned(NAME, wl.axes, "cuda")
            fn(*inputs, *outs)
            statuses.append(judging.judge(spec.judge, definition, inputs, outs, refs).status)
            errs.append(max(max_error_of_max(o, r) for o, r in zip(outs, refs)))
            times.append(time_us(fn, inputs + outs, 1, 5))
        fi_outs = _flashinfer_prefill(*inputs)  # (output, final state), as the definition's
        fi_err = (max(max_error_of_max(o.to(r.dtype), r) for o, r in zip(fi_outs, refs))
                  if all(o.shape == r.shape for o, r in zip(fi_outs, refs)) else float("nan"))
        t_kernel = time_us(_flashinfer_kernel, list(_flashinfer_gates(*inputs)), 1, 5)
        t_call = time_us(_flashinfer_prefill, inputs, 1, 5)
        total, seqs = wl.axes["total_seq_len"], wl.axes["num_seqs"]
        rows.append((total, seqs, statuses, times, t_kernel, t_call, errs, fi_err))
        print(f"{total} x{seqs}: " + " ".join(f"{n} {st} {t:.1f} (err {e:.1e})" for n, st, t, e in
                                            zip(variants, statuses, times, errs))
              + f" | flashinfer-kernel {t_kernel:.1f} flashinfer {t_call:.1f} (err {fi_err:.1e})", flush=True)
    print("\n| total tokens | n | " + " | ".join(f"{v} passed | {v} mean (max) | {v} slower than kernel" for v in variants)
          + " | flashinfer-kernel mean | flashinfer mean |")
    print("| --- " * (2 + 3 * len(variants) + 2) + "|")
    for lo, hi in BUCKETS + [(1, 8192)]:
        sel = [r for r in rows if lo <= r[0] <= hi]
        if not sel:
            continue
        label = "all" if (lo, hi) == (1, 8192) else f"{lo}-{hi}"
        cells = []
        for i in range(len(variants)):
            ts = [r[3][i] for r in sel]
            cells.append(f"{sum(r[2][i] == 'PASSED' for r in sel)} | {statistics.mean(ts):.1f} ({max(ts):.1f}) | "
                         f"{sum(r[3][i] > r[4] for r in sel)}")
        print(f"| {label} | {len(sel)} | " + " | ".join(cells) + f" | {statistics.mean(r[4] for r in sel):.1f} | "
              f"{statistics.mean(r[5] for r in sel):.1f} |")
    for i, v in enumerate(variants):
        print(f"{v}: worst error {max(r[6][i] for r in rows):.1e}")
    fi_errs = [r[7] for r in rows if r[7] == r[7]]  # nan where an output had another shape
    print(f"flashinfer: worst error {max(fi_errs, default=float('nan')):.1e} over {len(fi_errs)} workloads")

if __name__ == "__main__":
    main()
