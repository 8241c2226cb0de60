"""A CUDA solution's compile-time variants side by side on official workloads: each build of
the solution's kernel.cu with its -D flags judged against the reference, then its call's CUPTI
span (the contest's figure, cold L2, median of 20). With --ncu, each workload is only launched
three times (no timing), for a profiler run around it.

    python benchmarks/cuda_variants.py DEFINITION [--ncu] [VARIANT ...]
DEFINITION: a name or alias with a CUDA solution (gdn_prefill, dsa_attention, dsa_indexer).
VARIANT: "name:-DX=1,-DY=2"; a flag "src=FILE" builds FILE (relative to the repository) instead.
e.g. `gdn_prefill w2: w4:-DGDN_WARPS=4` (GDN_WARPS, GDN_PREP_WARPS, GDN_CHUNK,
GDN_RANK_FROM_SEQS), `dsa_attention base: b2:-DDSA_BLOCKS_PER_SM=2` (DSA_BLOCKS_PER_SM), `dsa_indexer f:
c4:-DIDX_CHUNK_PAGES=4` (IDX_CHUNK_PAGES, IDX_SCORE_BLOCKS_PER_SM, IDX_SELECT_THREADS,
IDX_DIGIT_BITS, IDX_PAGES_PER_STEP, IDX_EARLY_TRIGGER).
"""
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from fibkit import catalog
from fibkit.evaluate import judge as judging
from fibkit.evaluate.workloads import WorkloadSource
from fibkit.testing import max_error_of_max, official_inputs, poisoned

REPO = Path(__file__).resolve().parent.parent
# Workloads timed, by their var-axis values in the definition's axis order (None: one of each).
PICKS = {
    "gdn_prefill_qk4_v8_d128_k_last": [
        (6, 1), (61, 1), (134, 1), (248, 2), (525, 1), (983, 2), (2040, 2), (3999, 13),
        (5709, 2), (8192, 20), (8192, 25), (8192, 32), (8192, 57)],
    "dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64": None,
    # (batch_size, max_num_pages) prefixes: unscored, then scoring ones short to long
    "dsa_topk_indexer_fp8_h64_d128_topk2048_ps64": [
        (8, 32), (4, 34), (30, 33), (8, 45), (31, 43), (16, 43), (12, 82), (14, 91), (30, 91)],
}


def build(variant, name_of_definition):
    from torch.utils.cpp_extension import load
    name, _, flags = variant.partition(":")
    source = catalog.SPECS[name_of_definition].solution_dir("cuda") / "kernel.cu"
    out = Path(f"/tmp/cuda_variants/{name_of_definition}/{name}")
    out.mkdir(parents=True, exist_ok=True)
    flags = [f for f in flags.split(",") if f]
    sources = [str(REPO / f[4:]) for f in flags if f.startswith("src=")] or [str(source)]
    return load(name=f"{catalog.SPECS[name_of_definition].alias}_{name}", sources=sources, build_directory=str(out),
                extra_cuda_cflags=[f for f in flags if not f.startswith("src=")] + ["-lineinfo"], verbose=False)


def build_only(variant, name_of_definition):
    build(variant, name_of_definition)  # a module does not pickle back to the parent


def main():
    NAME = catalog.resolve(sys.argv[1]).name
    args = sys.argv[2:]
    under_ncu = "--ncu" in args
    variants = [a for a in args if a != "--ncu"] or ["base:"]
    with ProcessPoolExecutor(len(variants)) as pool:  # builds in parallel, loaded below
        list(pool.map(build_only, variants, [NAME] * len(variants)))
    mods = {v.partition(":")[0]: build(v, NAME) for v in variants}
    spec = catalog.SPECS[NAME]
    definition = catalog.load_definition(NAME)
    reference = spec.reference()
    from fibkit.evaluate.timing import time_us
    picked = {}
    for wl in WorkloadSource(spec, None, 0).workloads():
        key = tuple(wl.axes[a] for a in definition.var_axes)
        pick = key if PICKS[NAME] is None else next((p for p in PICKS[NAME] if key[:len(p)] == p), None)
        if pick is not None and pick not in picked:
            picked[pick] = wl
    print(f"| {' x '.join(definition.var_axes)} | " + " | ".join(mods) + " |\n" + "| --- " * (len(mods) + 1) + "|")
    for key in PICKS[NAME] or sorted(picked):
        wl = picked.get(key)
        if wl is None:
            continue
        inputs = official_inputs(NAME, wl)
        refs = None if under_ncu else judging.normalize_outputs(reference(*inputs), len(definition.outputs), spec.judge)
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
            floats = all(o.is_floating_point() for o in outs)  # (the indexer's are slots)
            err = f" e{max(max_error_of_max(o, r) for o, r in zip(outs, refs)):.0e}" if floats else ""
            t = time_us(fn, inputs + outs, 3, 20)
            cells.append(f"{t:.1f} {'' if status == 'PASSED' else status}{err}")
        if cells:
            print(f"| {' x '.join(map(str, key))} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
