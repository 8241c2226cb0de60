"""The CUDA prefill's compile-time variants side by side on thirteen official workloads: each
build of the solution's kernel.cu with its -D flags (e.g. -DGDN_WARPS=4) judged against the
reference, then its call's CUPTI span (the contest's figure, cold L2, median of 20). With --ncu,
each workload is only launched three times (no timing), for a profiler run around it.

    python benchmarks/gdn_prefill_cuda_variants.py [--ncu] [VARIANT ...]
VARIANT: "name:-DX=1,-DY=2"; a flag "src=FILE" builds FILE (relative to the repository) instead.
e.g. `w2: w4:-DGDN_WARPS=4 p3:-DGDN_PREP_WARPS=3` (the kernel's GDN_* macros: GDN_WARPS,
GDN_PREP_WARPS, GDN_CHUNK, GDN_RANK_FROM_SEQS).
"""
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from fibkit import catalog
from fibkit.evaluate import judge as judging
from fibkit.evaluate.workloads import WorkloadSource
from fibkit.testing import max_error_of_max, official_inputs, poisoned

NAME = "gdn_prefill_qk4_v8_d128_k_last"
SOURCE = catalog.SPECS[NAME].solution_dir("cuda") / "kernel.cu"
REPO = Path(__file__).resolve().parent.parent
PICKS = [(6, 1), (61, 1), (134, 1), (248, 2), (525, 1), (983, 2), (2040, 2), (3999, 13),
         (5709, 2), (8192, 20), (8192, 25), (8192, 32), (8192, 57)]


def build(variant):
    from torch.utils.cpp_extension import load
    name, _, flags = variant.partition(":")
    out = Path(f"/tmp/gdn_build/{name}")
    out.mkdir(parents=True, exist_ok=True)
    flags = [f for f in flags.split(",") if f]
    sources = [str(REPO / f[4:]) for f in flags if f.startswith("src=")] or [str(SOURCE)]
    return load(name=f"gdn_{name}", sources=sources, build_directory=str(out),
                extra_cuda_cflags=[f for f in flags if not f.startswith("src=")] + ["-lineinfo"], verbose=False)


def build_only(variant):
    build(variant)  # a module does not pickle back to the parent


def main():
    args = sys.argv[1:]
    under_ncu = "--ncu" in args
    variants = [a for a in args if a != "--ncu"] or ["base:"]
    with ProcessPoolExecutor(len(variants)) as pool:  # builds in parallel, loaded below
        list(pool.map(build_only, variants))
    mods = {v.partition(":")[0]: build(v) for v in variants}
    spec = catalog.SPECS[NAME]
    definition = catalog.load_definition(NAME)
    reference = spec.reference()
    from fibkit.evaluate.timing import time_us
    picked = {}
    for wl in WorkloadSource(spec, None, 0).workloads():
        key = (wl.axes["total_seq_len"], wl.axes["num_seqs"])
        if key in PICKS and key not in picked:
            picked[key] = wl
    print("| T x N | " + " | ".join(mods) + " |\n" + "| --- " * (len(mods) + 1) + "|")
    for key in PICKS:
        wl = picked.get(key)
        if wl is None:
            continue
        inputs = official_inputs(NAME, wl)
        refs = None if under_ncu else judging.normalize_outputs(reference(*inputs), 2, spec.judge)
        cells = []
        for name, mod in mods.items():
            outs = poisoned(NAME, wl.axes, "cuda")
            fn = lambda *a: mod.kernel(*a)
            if under_ncu:
                for _ in range(3):
                    fn(*inputs, *outs)
                torch.cuda.synchronize()
                continue
            fn(*inputs, *outs)
            status = judging.judge(spec.judge, definition, inputs, outs, refs).status
            err = max(max_error_of_max(o, r) for o, r in zip(outs, refs))
            t = time_us(fn, inputs + outs, 3, 20)
            cells.append(f"{t:.1f} {'' if status == 'PASSED' else status} e{err:.0e}")
        if cells:
            print(f"| {key[0]} x {key[1]} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
