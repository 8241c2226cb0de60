"""The Triton MoE on the GPU, on official workloads' inputs.

    python benchmarks/sweep_moe.py sweep [T,...] [label,...]   tile configurations per token
        count (only the labelled variants if given), each judged against the reference before it is timed (CUPTI span, cold L2, median, the
        four launches replayed as one CUDA graph as `run` does); prints floor, TFLOP/s, TB/s
    python benchmarks/sweep_moe.py accuracy        every workload and issue 5's extra cases
        against a float64 oracle: matched ratio under the contest rule, relative error
    --seed N (either): the inputs of seed N (default 0; with seed 0 the T = 1 workload routes
        no token to this rank, with seed 1 it hits one local expert)
"""
import dataclasses
import sys

import torch

from fibkit import catalog
from fibkit.evaluate.judge import compare
from fibkit.evaluate.workloads import WorkloadSource
from fibkit.evaluate.timing import method, time_us
from fibkit.testing import moe_oracle_of, official_inputs
from fibkit.references.moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048 import run as reference
from fibkit.solutions.moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048.triton import main as moe

NAME = "moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048"
SPEC = catalog.SPECS[NAME]
SEED = 0  # --seed


def workloads(pick=lambda t: True):
    definition = catalog.load_definition(NAME)
    for wl in WorkloadSource(SPEC, None, seed=SEED).workloads():
        if pick(wl.axes["seq_len"]):
            args = official_inputs(NAME, wl, seed=SEED)
            yield wl, args, SPEC.cost(wl.axes, dict(zip(definition.inputs, args)))


def extra_cases():
    """Issue 5's extra cases, built on official workloads' inputs: no token routed to this
    rank, every token on one local expert, local_expert_offset 224, and seq_len 4096."""
    by_t = {wl.axes["seq_len"]: (wl, args) for wl, args, _ in workloads(lambda t: t in (80, 901))}
    wl, args = by_t[80]
    none = list(args)
    none[0] = args[0].clone()
    none[0][:, args[8]:args[8] + 32] = -30.0  # local experts' sigmoid ~ 0: never picked
    yield "T=80 no token on this rank", none
    one = list(args)
    one[0] = args[0].clone()
    one[0][:, args[8] + 3] = 30.0
    yield "T=80 every token on expert 3", one
    wl, args = by_t[901]
    yield "T=901 local_expert_offset 224", args[:8] + [224, args[9]]
    big = dataclasses.replace(wl, uuid="extra-seq-len-4096", axes={"seq_len": 4096})
    yield "T=4096", official_inputs(NAME, big, seed=SEED)


def variants(tokens):
    """Configurations around the default: the intermediate's formats, one GEMM's tile changed
    at a time, the routing kernel's launch shape."""
    base = moe.launch_config(tokens)
    yield "default", {}
    # Both GEMM engines whatever "auto" picks (gluon_gemms.py's wgmma kernels need Hopper).
    yield "triton engine", {"engine": "triton"}
    yield "gluon engine", {"engine": "gluon"}
    yield "no pdl", {"pdl": False}  # each kernel launched only once the previous one ended
    for consumers, stages in ((2, (6, 8)), (3, (4, 5)), (3, (5, 7))):
        yield f"gluon {consumers} consumers, stages {stages}", {
            "engine": "gluon", "gluon_consumers": consumers, "gluon_stages": stages}
    for inter in ("bf16", "fp8"):
        yield f"{inter} intermediate", {"intermediate": inter}

    def g(name, **kw):
        return " ".join(f"{k}={v}" for k, v in kw.items()), {name: dict(base[name], **kw)}, name

    if tokens <= 128:
        changes = [g("gemm1", split=1), g("gemm1", split=4), g("gemm1", num_stages=6),
                   g("gemm1", BN=128), g("gemm2", num_stages=6), g("gemm2", BN=64),
                   g("gemm2", split=2), g("gemm2", split=4)]
    elif tokens <= 2048:
        changes = [g("gemm1", progs_per_sm=None), g("gemm2", num_stages=4),
                   g("gemm1", BM=64, num_warps=4), g("gemm2", BN=64, progs_per_sm=4)]
    else:
        changes = [g("gemm1", BM=64, BN=128, num_warps=4, progs_per_sm=2, num_stages=4),
                   g("gemm1", num_stages=4), g("gemm2", num_stages=3, num_warps=4, BM=64)]
        for bt, w in ((1, 1), (2, 1), (4, 2)):  # routing: fewer tokens and warps per program
            label, cfg, _ = g("gemm1")
            changes.append((f"route {bt} x {w}", dict(cfg, route_tokens=bt, route_warps=w), "-"))
    for label, cfg, gemm in changes:
        yield f"{gemm} {label}", cfg


def breakdown(fn, args, iters=10):
    """Mean device time per kernel over replays with a flushed L2 (torch.profiler)."""
    flush = torch.empty(256 << 20, dtype=torch.int8, device="cuda")
    fn(*args)
    fn(*args)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            flush.zero_()
            fn(*args)
        torch.cuda.synchronize()
    times = {}
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA and "elementwise" not in ev.name:
            name = ev.name.replace("_kernel", "")
            times[name] = times.get(name, 0.0) + ev.device_time / iters
    return "  ".join(f"{name[:24]} {us:.1f}" for name, us in sorted(times.items(), key=lambda x: -x[1]))


def sweep(tokens_wanted, only=None):
    print(f"## MoE tile sweep ({method()}); floor = max(bytes / 4.25 TB/s, FLOPs / 1.3 PFLOP/s)\n")
    for wl, args, cost in workloads(lambda t: t in tokens_wanted):
        t = wl.axes["seq_len"]
        ref = reference(*args)
        floor = cost.floor_us
        print(f"T={t}: floor {floor:.1f} us ({cost.bytes / 1e6:.0f} MB, {cost.flops / 1e9:.0f} GFLOP)")
        profiled = []
        for label, cfg in variants(t):
            if only and label not in only:
                continue
            out = torch.full_like(ref, float("nan"))
            try:
                moe.launch(*args, out, config=cfg)
                v = compare(out, ref, SPEC.judge.atol, SPEC.judge.rtol, SPEC.judge.required_ratio)
                if not v.passed:
                    print(f"    {label}: WRONG {v.message[:80]}")
                    continue
                graphed = moe.GraphCache(lambda *a, c=cfg: moe.launch(*a, config=c))
                us = time_us(graphed, args + [out], warmup=5, iters=20 if t > 5000 else 50)
            except Exception as e:  # a configuration Triton cannot build: say so, go on
                print(f"    {label}: FAIL {type(e).__name__}: {str(e)[:100]}")
                continue
            rel = ((out.double() - ref.double()).norm() / ref.double().norm()).item()
            print(f"    {label}: {us:8.1f} us  {us / floor:5.2f}x floor  matched {v.matched_ratio:.2%}  "
                  f"{cost.flops / us / 1e6:6.0f} TFLOP/s  {cost.bytes / us / 1e6:5.2f} TB/s  "
                  f"rel {rel:.1e}")
            if label in ("default", "triton engine", "gluon engine", "bf16 intermediate", "fp8 intermediate"):
                profiled.append((label, graphed, out))
        # After the timings: a torch.profiler session distorts the next CUPTI timings (x2).
        for label, graphed, out in profiled:
            print(f"    {label} per kernel (us): {breakdown(graphed, args + [out])}")
        if profiled:  # the CUPTI session right after a profiler's reads ~2x high: spend it here
            time_us(profiled[0][1], args + [profiled[0][2]], warmup=1, iters=3)
        del ref
        torch.cuda.empty_cache()


def accuracy():
    print("## MoE against a float64 oracle (contest rule |d| <= 1 or <= 0.3 |ref|)\n")
    rule = SPEC.judge
    rows = [(f"{wl.uuid[:8]} T={wl.axes['seq_len']}", args) for wl, args, _ in workloads()]
    rows += list(extra_cases())
    for label, args in rows:
        want = moe_oracle_of(args)
        for inter in ("bf16", "fp8", "fp8_pair"):
            cfg = {"intermediate": inter}
            out = torch.full((args[2].shape[0], 7168), float("nan"), dtype=torch.bfloat16,
                             device="cuda")
            moe.launch(*args, out, config=cfg)
            v = compare(out, want, rule.atol, rule.rtol, rule.required_ratio)
            rel = ((out.double() - want).norm() / want.norm().clamp_min(1e-300)).item()
            print(f"{label:>32} {inter} intermediate: {v.status} matched {v.matched_ratio:.4%}  "
                  f"rel error {rel:.2e}  max |d| {v.max_abs:.3g}  all zero {bool((out == 0).all())}")
        del want
        torch.cuda.empty_cache()


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--seed" in argv:
        at = argv.index("--seed")
        SEED = int(argv[at + 1])
        del argv[at:at + 2]
    print(f"inputs of seed {SEED}")
    if argv[0] == "sweep":
        wanted = {int(t) for t in (argv[1] if len(argv) > 1 else "7,80,901,11948").split(",")}
        sweep(wanted, argv[2].split(",") if len(argv) > 2 else None)
    else:
        accuracy()
