"""Sweep the GDN kernels' launch parameters on the GPU, beside fla, with the contest's timing
(CUPTI span, cold L2, median). Prints, per size, each configuration's time, the bandwidth or
FLOP rate it reaches, and the error against the float64 oracle of the default configuration.

    python benchmarks/sweep_gdn.py [decode] [prefill]
"""
import importlib
import os
import sys

import torch

from fibkit import catalog
from fibkit.evaluate.peers import external_peer
from fibkit.evaluate.timing import method, time_us
from fibkit.testing import gdn_decode_inputs, gdn_decode_oracle, gdn_oracle, gdn_prefill_inputs
from fibkit.testing import max_error_of_max as rel_err

DECODE = "gdn_decode_qk4_v8_d128_k_last"
PREFILL = "gdn_prefill_qk4_v8_d128_k_last"
COPY_BW = catalog.COPY_BYTES_PER_S


def module(name):
    return importlib.import_module(f"fibkit.solutions.{name}.triton.main")


def sweep_decode():
    mod = module(DECODE)
    fla = external_peer("fla", DECODE)
    configs = [(bv, w, fused) for bv in (8, 16, 32, 64) for w in (1, 2, 4, 8) for fused in (False, True)]
    print(f"\n## decode ({method()})\n")
    print("| B | floor us | default | best (BV, warps, fused) | best TB/s | fla | out err | state err |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for batch in (1, 2, 4, 8, 16, 32, 48, 64, 128, 256):
        args = gdn_decode_inputs(batch, "cuda", seed=batch)
        out = torch.empty(batch, 1, 8, 128, dtype=torch.bfloat16, device="cuda")
        new_state = torch.empty(batch, 8, 128, 128, device="cuda")
        mod.run(*args, out, new_state)
        ref_out, ref_state = gdn_decode_oracle(*args)
        bytes_moved = 2 * new_state.numel() * 4
        times = {}
        for cfg in configs:
            times[cfg] = time_us(lambda *a, c=cfg: mod.launch(*a, config=c), args + [out, new_state])
        best = min(times, key=times.get)
        default = times[mod.launch_config(batch)]
        fla_us = time_us(fla.fn, args) if fla else float("nan")
        print(f"| {batch} | {bytes_moved / COPY_BW * 1e6:.2f} | {default:.2f} | {times[best]:.2f} {best} | "
              f"{bytes_moved / times[best] / 1e6:.2f} | {fla_us:.2f} | {rel_err(out, ref_out):.1e} | "
              f"{rel_err(new_state, ref_state):.1e} |")
        print("    all:", " ".join(f"{c[0]}/{c[1]}{'f' if c[2] else ''}:{t:.2f}" for c, t in sorted(times.items())))


PREFILL_SHAPES = [[6], [61], [100, 139], [256], [80, 90, 85], [574, 0], [983, 17, 1], [1377],
                  [2107], [600, 700, 500], [2855, 2854], [205] * 39 + [197], [144] * 56 + [128]]
# The size-based default, then whole configurations of each launch form: k = one kernel,
# p = prepare + walk; the number is the chunk size.
_ONE = dict(prepared=False, chunk=16, block_v=16, num_warps=4, precision="tf32x3")
_TWO = dict(_ONE, prepared=True)
PREFILL_VARIANTS = {
    "default": {}, "k16": _ONE, "k16 w2": dict(_ONE, num_warps=2),
    "k16 ieee": dict(_ONE, precision="ieee"), "k16 w2 ieee": dict(_ONE, num_warps=2, precision="ieee"),
    "p16": _TWO, "p32": dict(_TWO, chunk=32), "p32 w2": dict(_TWO, chunk=32, num_warps=2),
    "p32 ieee": dict(_TWO, chunk=32, precision="ieee"), "p32 bv32": dict(_TWO, chunk=32, block_v=32),
    "p16 bv64": dict(_TWO, block_v=64), "p32 bv64": dict(_TWO, chunk=32, block_v=64),
    "p16 bv32 w2": dict(_TWO, block_v=32, num_warps=2)}


def flashinfer_built() -> bool:
    """Whether FlashInfer's prefill module is built here (a sweep does not wait for the build)."""
    try:
        from flashinfer.jit.gdn import gen_gdn_prefill_sm90_module
        return gen_gdn_prefill_sm90_module().is_compiled
    except Exception as e:
        print("flashinfer unavailable:", e)
        return False


def sweep_prefill():
    only = os.environ.get("GDN_VARIANTS")
    variants = {n: c for n, c in PREFILL_VARIANTS.items() if not only or n in only.split(",")}
    mod = module(PREFILL)
    from fibkit.evaluate.peers import _flashinfer_gates, _flashinfer_kernel
    fi = flashinfer_built()
    print(f"\n## prefill ({method()}); errors: max |err| / max |oracle|, output / state\n")
    names = list(variants)
    print("| T | seqs | " + " | ".join(names) + " | flashinfer-kernel | worst err |")
    print("| --- " * (len(names) + 4) + "|")
    for lengths in PREFILL_SHAPES:
        total = sum(lengths)
        args = gdn_prefill_inputs(lengths, "cuda", seed=total)
        ref_out, ref_state = gdn_oracle(*args)
        times, worst = [], 0.0
        for name, cfg in variants.items():
            out = torch.full((total, 8, 128), float("nan"), dtype=torch.bfloat16, device="cuda")
            new_state = torch.full((len(lengths), 8, 128, 128), float("nan"), device="cuda")
            try:
                kernels = mod.launch(*args, out, new_state, config=cfg)
            except Exception as e:  # a variant Triton cannot compile is reported, not fatal
                print(f"    {name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                times.append(float("nan"))
                continue
            errs = (rel_err(out, ref_out), rel_err(new_state, ref_state))
            if not all(e < 1e-2 for e in errs):  # NaN fails too
                print(f"    {name}: WRONG, errors {errs[0]:.1e} / {errs[1]:.1e}")
                times.append(float("nan"))
                continue
            worst = max(worst, *errs)
            times.append(time_us(lambda *a, c=cfg: mod.launch(*a, config=c), args + [out, new_state],
                                 1, 5 if total > 4096 else 20))
            if lengths == PREFILL_SHAPES[0] or total == 8192:
                print(f"    {name} regs/spills:", [(k.n_regs, k.n_spills) for k in kernels])
        fi_us = time_us(_flashinfer_kernel, list(_flashinfer_gates(*args)), 1, 5) if fi else float("nan")
        print(f"| {total} | {len(lengths)} | " + " | ".join(f"{t:.1f}" for t in times) +
              f" | {fi_us:.1f} | {worst:.1e} |")


if __name__ == "__main__":
    which = sys.argv[1:] or ["decode", "prefill"]
    if "decode" in which:
        sweep_decode()
    if "prefill" in which:
        sweep_prefill()
