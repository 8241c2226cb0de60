"""Sweep the DSA kernels' launch parameters on the GPU with the contest's timing (CUPTI span,
cold L2, median), on official workloads' inputs. Every configuration is judged against the
reference before it is timed; a wrong one prints WRONG instead of a time.

    [DSA_TOKENS=1,8] python benchmarks/sweep_dsa.py [attention] [indexer]
"""
import importlib
import os
import sys

import torch

from fibkit import catalog
from fibkit.evaluate.judge import PASSED, judge
from fibkit.evaluate.workloads import WorkloadSource
from fibkit.evaluate.timing import method, time_us
from fibkit.testing import official_inputs

ATTENTION = "dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64"
INDEXER = "dsa_topk_indexer_fp8_h64_d128_topk2048_ps64"
BW = catalog.COPY_BYTES_PER_S  # the attention floor: gathered bytes at the copy rate (+ 3 us)


def cases(name, pick):
    spec = catalog.SPECS[name]
    source = WorkloadSource(spec, None, seed=0)
    definition = catalog.load_definition(name)
    seen = set()
    for wl in source.workloads():
        key = pick(wl.axes)
        if key is None or key in seen:
            continue
        seen.add(key)
        yield wl, definition, spec, official_inputs(name, wl)


def verdict(spec, definition, args, outs):
    ref = importlib.import_module(f"fibkit.references.{spec.name}").run(*args)
    refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    return judge(spec.judge, definition, args, outs, refs)


def sweep(name, pick, configs, fresh_outputs, describe):
    mod = importlib.import_module(f"fibkit.solutions.{name}.triton.main")
    baseline = importlib.import_module(f"fibkit.solutions.{name}.baseline.main")
    print(f"\n## {name} ({method()})\n")
    for wl, definition, spec, args in cases(name, pick):
        cost = spec.cost(wl.axes, dict(zip(definition.inputs, args)))
        row = {}
        for cfg in configs(wl.axes):
            outs = fresh_outputs(definition, wl.axes)
            try:
                mod.launch(*args, *outs, config=cfg)
                torch.cuda.synchronize()
                v = verdict(spec, definition, args, outs)
                row[tuple(cfg.items())] = (time_us(lambda *a, c=cfg: mod.launch(*a, config=c), args + outs)
                                           if v.status == PASSED else f"WRONG({v.message[:40]})")
            except Exception as e:  # a configuration Triton cannot build: say so, go on
                row[tuple(cfg.items())] = f"FAIL({type(e).__name__}: {str(e)[:60]})"
        timed = {k: t for k, t in row.items() if isinstance(t, float)}
        best = min(timed, key=timed.get) if timed else None
        torch_us = time_us(baseline.run, args + fresh_outputs(definition, wl.axes), warmup=3, iters=10)
        print(f"{describe(wl.axes, args)}: bytes {cost.bytes / 1e6:.2f} MB, floor {cost.bytes / BW * 1e6:.2f} us; "
              f"torch {torch_us:.1f} us; best {timed.get(best, float('nan')):.2f} us {dict(best or ())}")
        for k, t in row.items():
            print(f"    {dict(k)}: {t if isinstance(t, str) else f'{t:.2f}'}")


def outputs(definition, axes):
    from fibkit.evaluate.inputs import poisoned_outputs
    return poisoned_outputs(definition, axes, "cuda")


def attention_configs(axes):
    """The Triton twin's launch forms (the CUDA default's are compile-time: cuda_variants.py)."""
    yield dict()  # the default for this size
    for splits in (8, 16, 32, 64, 128):
        for block_n in (32, 64):
            if 2048 % (splits * block_n):
                continue
            for warps in (4, 8):
                for stages in (1, 3):
                    yield dict(splits=splits, block_n=block_n, num_warps=warps, num_stages=stages)


def indexer_configs(axes):
    yield dict()
    if axes["max_num_pages"] * 64 <= 2048:
        return
    for chunk, step in ((2, 1), (2, 2), (4, 2), (4, 4), (8, 2), (8, 4)):
        for warps in (4, 8):
            yield dict(chunk_pages=chunk, step_pages=step, num_warps=warps)


INDEXER_PICKS = {(1, 1), (8, 32), (4, 45), (8, 45), (12, 82), (15, 91), (29, 91), (30, 91), (31, 43),
                 (30, 36)}

if __name__ == "__main__":
    which = set(sys.argv[1:]) or {"attention", "indexer"}
    if "attention" in which:
        tokens = {int(t) for t in os.environ.get("DSA_TOKENS", "1,2,6,7,8").split(",")}
        sweep(ATTENTION, lambda a: a["num_tokens"] if a["num_tokens"] in tokens else None,
              attention_configs, outputs,
              lambda a, args: f"T={a['num_tokens']}")
    if "indexer" in which:
        sweep(INDEXER, lambda a: (a["batch_size"], a["max_num_pages"])
              if (a["batch_size"], a["max_num_pages"]) in INDEXER_PICKS else None,
              indexer_configs, outputs,
              lambda a, args: f"B={a['batch_size']} M={a['max_num_pages']} "
                              f"long rows={int((args[3] > 2048).sum())} tokens={int(args[3].sum())}")
