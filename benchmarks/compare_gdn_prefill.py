"""Our GDN prefill beside FlashInfer's Hopper kernel on every official workload, in one run:
each workload's inputs (synthesized as `fibkit bench` does, seed 0, trial 0) judged against
the reference with the contest's rule, then timed the contest way (CUPTI span, cold L2, 1
warm-up, 5 iterations, median) for ours, FlashInfer's kernel alone (gates computed outside
the timed region) and FlashInfer as a whole call. A quicker view than `fibkit bench` (one
trial, no reference or torch timing), for a device call's budget. Prints per-workload rows
and a table by size.

    python benchmarks/compare_gdn_prefill.py
"""
import importlib
import statistics


from fibkit import catalog
from fibkit.evaluate import judge as judging
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
    ours = importlib.import_module(f"fibkit.solutions.{NAME}.triton.main").run
    rows = []
    print(f"timing: {method()}")
    for wl in WorkloadSource(spec, None, 0).workloads():
        inputs = official_inputs(NAME, wl)
        refs = judging.normalize_outputs(reference(*inputs), 2, spec.judge)
        outs = poisoned(NAME, wl.axes, "cuda")
        ours(*inputs, *outs)
        verdict = judging.judge(spec.judge, definition, inputs, outs, refs)
        err = [max_error_of_max(o, r) for o, r in zip(outs, refs)]
        t_ours = time_us(ours, inputs + outs, 1, 5)
        t_kernel = time_us(_flashinfer_kernel, list(_flashinfer_gates(*inputs)), 1, 5)
        t_call = time_us(_flashinfer_prefill, inputs, 1, 5)
        total, seqs = wl.axes["total_seq_len"], wl.axes["num_seqs"]
        rows.append((total, seqs, verdict.status, t_ours, t_kernel, t_call, *err))
        print(f"{total} x{seqs}: {verdict.status} ours {t_ours:.1f} flashinfer-kernel {t_kernel:.1f} "
              f"flashinfer {t_call:.1f} err {err[0]:.1e} / {err[1]:.1e}", flush=True)
    print("\n| total tokens | n | passed | ours mean (max) | flashinfer-kernel mean | flashinfer mean "
          "| ours / kernel | slower than kernel |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for lo, hi in BUCKETS + [(1, 8192)]:
        sel = [r for r in rows if lo <= r[0] <= hi]
        if not sel:
            continue
        mean = lambda i: statistics.mean(r[i] for r in sel)  # noqa: E731
        label = "all" if (lo, hi) == (1, 8192) else f"{lo}-{hi}"
        print(f"| {label} | {len(sel)} | {sum(r[2] == 'PASSED' for r in sel)} | {mean(3):.1f} "
              f"({max(r[3] for r in sel):.1f}) | {mean(4):.1f} | {mean(5):.1f} | {mean(3) / mean(4):.2f} "
              f"| {sum(r[3] > r[4] for r in sel)} |")
    print(f"worst errors: output {max(r[6] for r in rows):.1e}, state {max(r[7] for r in rows):.1e}")


if __name__ == "__main__":
    main()
