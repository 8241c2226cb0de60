"""The wgmma grouped fp8 GEMM prototype (moe_grouped_gemm_wgmma.cu) on the H200: checked
against a dequantized fp32 product, then timed at the MoE's GEMM shapes beside the Triton MoE's
per-kernel figures (docs/perf-notes.md).

    python benchmarks/moe_grouped_gemm_wgmma.py [NAME:FLAG,FLAG ...]

Each NAME:FLAGS is a build of the same source with those -D flags (default "base:"), built
in parallel, then checked and timed side by side: MOE_CONSUMERS (2 or 3 warpgroups of 64
rows), MOE_STAGES, MOE_PIPELINE (two block accumulators; ptxas serializes its wgmmas).

Shapes: rows per expert drawn around the mean a T-token call gives one EP rank (T * 8 / 256
pairs per local expert); GEMM1 N = 4096 (up and gate), K = 7168; GEMM2 N = 7168, K = 2048, and
K = 4096 (the fp8 pair intermediate's two planes as one longer K).
"""
import os
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def build(variant):
    from torch.utils.cpp_extension import load

    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0a")  # wgmma and setmaxnreg: sm_90a only
    name, _, flags = variant.partition(":")
    out = Path(f"/tmp/moe_wgmma_build/{name}")
    out.mkdir(parents=True, exist_ok=True)
    defines = [f"-D{f}" for f in flags.split(",") if f]
    return load(name=f"moe_grouped_gemm_wgmma_{name}", sources=[str(HERE / "moe_grouped_gemm_wgmma.cu")],
                build_directory=str(out), extra_cuda_cflags=["-O3", "-lineinfo"] + defines,
                extra_ldflags=["-L/usr/local/cuda/lib64/stubs", "-lcuda"], verbose=False)


def build_only(variant):
    build(variant)  # a module does not pickle back to the parent


def problem(rows_per_expert, n, k, seed):
    """Operands of a grouped GEMM: a [rows, K] e4m3 with scales [K/128, rows]; b [E, N, K] e4m3
    with scales [E, N/128, K/128]; row_start [E + 1]."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    rows = int(sum(rows_per_expert))
    e = len(rows_per_expert)
    fp8 = lambda *shape: (torch.randn(*shape, device="cuda", generator=g) * 2).to(torch.float8_e4m3fn)
    a, b = fp8(rows, k), fp8(e, n, k)
    sa = torch.rand(k // 128, rows, device="cuda", generator=g) + 0.5
    sb = (torch.rand(e, n // 128, k // 128, device="cuda", generator=g) + 0.5) * 1e-2
    start = torch.zeros(e + 1, dtype=torch.int32, device="cuda")
    start[1:] = torch.tensor(rows_per_expert, device="cuda").cumsum(0)
    return a, sa, b, sb, start


def reference(a, sa, b, sb, start):
    """fp32 product of the dequantized operands, expert by expert (TF32 off)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a32 = a.float() * sa.t().repeat_interleave(128, dim=1)
    out = torch.empty(a.shape[0], b.shape[1], device="cuda")
    for e in range(b.shape[0]):
        lo, hi = int(start[e]), int(start[e + 1])
        if hi > lo:
            w = b[e].float() * sb[e].repeat_interleave(128, 0).repeat_interleave(128, 1)
            out[lo:hi] = a32[lo:hi] @ w.t()
    return out


def rows_around(mean, experts, seed):
    g = torch.Generator().manual_seed(seed)
    return [int(x) for x in torch.poisson(torch.full((experts,), float(mean)), generator=g)]


def main():
    import sys
    from concurrent.futures import ProcessPoolExecutor

    from fibkit.evaluate.timing import time_us

    variants = sys.argv[1:] or ["base:"]
    with ProcessPoolExecutor(len(variants)) as pool:
        list(pool.map(build_only, variants))
    for variant in variants:
        print(f"## grouped fp8 block-scale GEMM, wgmma prototype: {variant}\n")
        run(build(variant), time_us)


def run(mod, time_us):
    checks = [([0, 100, 300, 7], 256, 512), ([129, 1, 64, 0, 255], 384, 1024),
              (rows_around(373, 32, 1), 4096, 7168)]
    for i, (rows, n, k) in enumerate(checks):
        args = problem(rows, n, k, seed=i)
        out = torch.full((args[0].shape[0], n), float("nan"), dtype=torch.bfloat16, device="cuda")
        mod.grouped_gemm(*args, out)
        want = reference(*args)
        again = torch.empty_like(out)
        mod.grouped_gemm(*args, again)
        rel = ((out.float() - want).norm() / want.norm()).item()
        print(f"check rows {sum(rows)} ({len(rows)} experts) N {n} K {k}: rel error {rel:.2e}, "
              f"nan {bool(out.isnan().any())}, repeat equal {torch.equal(out, again)}")
    print()
    print("| shape | rows | us | TFLOP/s | weight TB/s |")
    print("| --- | --- | --- | --- | --- |")
    for label, mean, n, k in [("GEMM1, T = 11948", 373, 4096, 7168), ("GEMM2, T = 11948", 373, 7168, 2048),
                              ("GEMM2 pair, T = 11948", 373, 7168, 4096), ("GEMM1, T = 14107", 441, 4096, 7168),
                              ("GEMM1, T = 901", 28, 4096, 7168), ("GEMM2 pair, T = 901", 28, 7168, 4096),
                              ("GEMM1, T = 80", 3, 4096, 7168)]:
        rows = rows_around(mean, 32, 7)
        args = problem(rows, n, k, seed=3)
        out = torch.empty(args[0].shape[0], n, dtype=torch.bfloat16, device="cuda")
        us = time_us(mod.grouped_gemm, list(args) + [out], warmup=5, iters=30)
        flops = 2 * sum(rows) * n * k
        live = sum(1 for r in rows if r)
        print(f"| {label} | {sum(rows)} | {us:.1f} | {flops / us / 1e6:.0f} | {live * n * k / us / 1e6:.2f} |")


if __name__ == "__main__":
    main()
