"""Sweep the GDN kernels' launch parameters on the GPU, beside fla, with the contest's timing
(CUPTI span, cold L2, median). Prints, per size, each configuration's time, the bandwidth or
FLOP rate it reaches, and the error against the float64 oracle of the default configuration.

    python benchmarks/sweep_gdn.py [decode] [prefill]
"""
import importlib
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gdn_oracle import decode_oracle, gdn_oracle, on  # noqa: E402

from fibkit import catalog  # noqa: E402
from fibkit.dataset import gdn  # noqa: E402
from fibkit.evaluate.peers import external_peer  # noqa: E402
from fibkit.evaluate.timing import method, time_us  # noqa: E402

DECODE = "gdn_decode_qk4_v8_d128_k_last"
PREFILL = "gdn_prefill_qk4_v8_d128_k_last"
INPUTS = ["q", "k", "v", "state", "A_log", "a", "dt_bias", "b"]
COPY_BW = catalog.COPY_BYTES_PER_S


def module(name):
    return importlib.import_module(f"fibkit.solutions.{name}.triton.main")


def rel_err(got, want):
    return ((got.double() - want).abs().max() / want.abs().max()).item()


def sweep_decode():
    mod = module(DECODE)
    fla = external_peer("fla", DECODE)
    configs = [(bv, w) for bv in (8, 16, 32, 64) for w in (1, 2, 4, 8)]
    print(f"\n## decode ({method()})\n")
    print("| B | floor us | default | best (BV, warps) | best TB/s | fla | out err | state err |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for batch in (1, 2, 4, 8, 16, 32, 48, 64, 128, 256):
        x = on(gdn.synthesize(DECODE, {"batch_size": batch}, torch.Generator().manual_seed(batch), "cpu"), "cuda")
        args = [x[n] for n in INPUTS] + [0.0]
        out = torch.empty(batch, 1, 8, 128, dtype=torch.bfloat16, device="cuda")
        new_state = torch.empty(batch, 8, 128, 128, device="cuda")
        mod.run(*args, out, new_state)
        ref_out, ref_state = decode_oracle(*args)
        bytes_moved = 2 * new_state.numel() * 4
        times = {}
        for cfg in configs:
            times[cfg] = time_us(lambda *a, c=cfg: mod.launch(*a, config=c), args + [out, new_state])
        best = min(times, key=times.get)
        default = times[mod.launch_config(batch)]
        fla_us = time_us(fla, args) if fla else float("nan")
        print(f"| {batch} | {bytes_moved / COPY_BW * 1e6:.2f} | {default:.2f} | {times[best]:.2f} {best} | "
              f"{bytes_moved / times[best] / 1e6:.2f} | {fla_us:.2f} | {rel_err(out, ref_out):.1e} | "
              f"{rel_err(new_state, ref_state):.1e} |")
        print("    all:", " ".join(f"{c[0]}/{c[1]}:{t:.2f}" for c, t in sorted(times.items())))


PREFILL_SHAPES = [[6], [61], [100, 139], [256], [983, 17, 1], [2107], [1000, 1200, 1000, 924],
                  [8192], [205] * 39 + [197]]
# One factor at a time away from the default configuration.
PREFILL_VARIANTS = {"default": {}, "one launch": dict(fused=True), "3 launches": dict(fused=False),
                    "bv16": dict(block_v=16), "bv32": dict(block_v=32), "stages1": dict(stages=1),
                    "tril tf32x3": dict(tril="tf32x3")}


def sweep_prefill():
    only = os.environ.get("GDN_VARIANTS")
    variants = {n: c for n, c in PREFILL_VARIANTS.items() if not only or n in only.split(",")}
    mod = module(PREFILL)
    fla = external_peer("fla", PREFILL)
    print(f"\n## prefill ({method()})\n")
    names = list(variants)
    print("| T | seqs | " + " | ".join(names) + " | prepare alone | walk alone | output alone | fla | out err | state err |")
    print("| --- " * (len(names) + 8) + "|")
    for lengths in PREFILL_SHAPES:
        total = sum(lengths)
        x = on(gdn.synthesize(PREFILL, {"total_seq_len": total, "num_seqs": len(lengths)},
                              torch.Generator().manual_seed(total), "cpu"), "cuda")
        cu = torch.tensor([0] + lengths, device="cuda").cumsum(0)
        args = [x[n] for n in INPUTS] + [cu, 0.0]
        out = torch.full((total, 8, 128), float("nan"), dtype=torch.bfloat16, device="cuda")
        new_state = torch.full((len(lengths), 8, 128, 128), float("nan"), device="cuda")
        kernels = mod.launch(*args, out, new_state)
        ref_out, ref_state = gdn_oracle(*args)
        errs = [rel_err(out, ref_out), rel_err(new_state, ref_state)]
        times = [time_us(lambda *a, c=cfg: mod.launch(*a, config=c), args + [out, new_state])
                 for cfg in variants.values()]
        # Each role alone, as its own launch (walk and output reuse the workspace).
        kernel_args = mod.launch(*args, out, new_state, config=dict(fused=False))
        split = [time_us(lambda *a, r=r: mod.launch(*a, config=dict(roles=r)), args + [out, new_state])
                 for r in (mod.PREPARE, mod.WALK, mod.OUTPUT)]
        fla_us = time_us(fla, args) if fla else float("nan")
        print(f"| {total} | {len(lengths)} | " + " | ".join(f"{t:.1f}" for t in times) +
              f" | {split[0]:.1f} | {split[1]:.1f} | {split[2]:.1f} | {fla_us:.1f} | {errs[0]:.1e} | {errs[1]:.1e} |")
        if lengths == PREFILL_SHAPES[0]:
            print("    regs/spills:", [(k.n_regs, k.n_spills) for k in kernels + kernel_args])


if __name__ == "__main__":
    which = sys.argv[1:] or ["decode", "prefill"]
    if "decode" in which:
        sweep_decode()
    if "prefill" in which:
        sweep_prefill()
