"""GDN decode designs for issue 16, beside the solution's kernel, FlashInfer's and fla's (GPU).

    python benchmarks/gdn_decode_variants.py [hints | cuda] [B ...]   (default B: 1 4 8 16 32 48 64 128 256)
        the Triton variants below; "hints": the state's cache hints; "cuda": the CUDA solution's
        kernel.cu built with each of CUDA_VARIANTS' flags. "triton" is the Triton solution (the CUDA default's twin).
    TRITON_INTERPRET=1 python benchmarks/gdn_decode_variants.py check   (CPU: every variant
        against the float64 oracle at B = 2 and 3, with and without a state)

The Triton solution's kernel (triton/main.py, the CUDA default's twin) gives each one-warp
program 8 state rows of one (sequence, head): per row it reduces S k, updates the row, then
reduces S q. The two ideas measured here:
- rows per program in a loop (STEPS row blocks of BV rows, software-pipelined over STAGES),
  so that at large B fewer, longer programs keep loads in flight while earlier rows are
  stored (FlashInfer's decode streams a whole head per 4-warp block through a cp.async ring);
- the output from the loaded state (FUSED): o = scale (S q + delta (k . q)) with
  delta = beta (v - S k), so S k and S q are two independent reductions of the same registers
  and the updated rows are only stored, never reduced again (one dependent step shorter).
A variant is (BV, STEPS, num_warps, STAGES, FUSED[, ROWS_FIRST, STREAM_STORE, LOAD_HINT]);
(8, 1, 1, 1, False) is v1's kernel.
"""
import importlib
import sys

import torch
import triton
import triton.language as tl

DECODE = "gdn_decode_qk4_v8_d128_k_last"


@triton.jit
def decode_variant_kernel(q_ptr, k_ptr, v_ptr, state_ptr, A_log_ptr, a_ptr, dt_bias_ptr, b_ptr,
                          out_ptr, new_state_ptr, scale,
                          HAS_STATE: tl.constexpr, NUM_V_HEADS: tl.constexpr, GROUP: tl.constexpr,
                          K: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, STEPS: tl.constexpr,
                          STAGES: tl.constexpr, FUSED: tl.constexpr, ROWS_FIRST: tl.constexpr,
                          STREAM_STORE: tl.constexpr, LOAD_HINT: tl.constexpr):
    # ROWS_FIRST: the row blocks of one head are the grid's fastest axis, so that blocks the
    # scheduler starts together touch one contiguous 64 KB head rather than 16 heads 64 KB apart.
    seq_head = tl.program_id(1) if ROWS_FIRST else tl.program_id(0)  # = sequence * NUM_V_HEADS + v head
    row_block = tl.program_id(0) if ROWS_FIRST else tl.program_id(1)
    head = seq_head % NUM_V_HEADS
    qk_row = (seq_head // NUM_V_HEADS) * (NUM_V_HEADS // GROUP) + head // GROUP
    offs_k = tl.arange(0, K)
    k = tl.load(k_ptr + qk_row * K + offs_k).to(tl.float32)
    q = tl.load(q_ptr + qk_row * K + offs_k).to(tl.float32)
    kq = tl.sum(k * q, axis=0)
    x = tl.load(a_ptr + seq_head).to(tl.float32) + tl.load(dt_bias_ptr + head)
    softplus = tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(x)))
    g = tl.exp(-tl.exp(tl.load(A_log_ptr + head)) * softplus)
    beta = tl.sigmoid(tl.load(b_ptr + seq_head).to(tl.float32))
    head_base = seq_head.to(tl.int64) * V * K
    for step in tl.range(0, STEPS, num_stages=STAGES):
        rows = (row_block * STEPS + step) * BV + tl.arange(0, BV)
        state_offs = head_base + rows[:, None] * K + offs_k[None, :]
        v = tl.load(v_ptr + seq_head * V + rows).to(tl.float32)
        if HAS_STATE:
            if LOAD_HINT == 0:
                s = tl.load(state_ptr + state_offs, eviction_policy="evict_first") * g
            elif LOAD_HINT == 1:  # no hint
                s = tl.load(state_ptr + state_offs) * g
            else:  # cache in L2 only
                s = tl.load(state_ptr + state_offs, cache_modifier=".cg") * g
        else:
            s = tl.zeros((BV, K), dtype=tl.float32)
        if FUSED:
            sk = tl.sum(s * k[None, :], axis=1)
            sq = tl.sum(s * q[None, :], axis=1)
            delta = beta * (v - sk)
            out = (sq + delta * kq) * scale
            s = s + delta[:, None] * k[None, :]
        else:
            delta = beta * (v - tl.sum(s * k[None, :], axis=1))
            s = s + delta[:, None] * k[None, :]
            out = tl.sum(s * q[None, :], axis=1) * scale
        if STREAM_STORE:
            tl.store(new_state_ptr + state_offs, s, cache_modifier=".cs")
        else:
            tl.store(new_state_ptr + state_offs, s, eviction_policy="evict_first")
        tl.store(out_ptr + seq_head * V + rows, out.to(out_ptr.dtype.element_ty))


def launch(variant, q, k, v, state, A_log, a, dt_bias, b, scale, output, new_state):
    bv, steps, warps, stages, fused, rows_first, stream_store, load_hint = (
        tuple(variant) + (False, False, 0)[len(variant) - 5:])
    batch, _, qk_heads, head_k = q.shape
    v_heads, head_v = v.shape[2], v.shape[3]
    scale = float(scale) if scale else head_k ** -0.5
    grid = (batch * v_heads, head_v // (bv * steps))
    decode_variant_kernel[grid[::-1] if rows_first else grid](
        q, k, v, state if state is not None else new_state, A_log, a, dt_bias, b, output, new_state, scale,
        HAS_STATE=state is not None, NUM_V_HEADS=v_heads, GROUP=v_heads // qk_heads, K=head_k, V=head_v,
        BV=bv, STEPS=steps, STAGES=stages, FUSED=fused, ROWS_FIRST=rows_first,
        STREAM_STORE=stream_store, LOAD_HINT=load_hint, num_warps=warps)


SOLUTION = (8, 1, 1, 1, False)
# (BV, STEPS, num_warps, STAGES, FUSED[, ROWS_FIRST, STREAM_STORE, LOAD_HINT]); the first round (perf
# notes, decode v2) measured STEPS > 1 and 4-8 warp programs slower at every B.
VARIANTS = [SOLUTION, (8, 1, 1, 1, True), (8, 1, 1, 1, False, True), (8, 1, 1, 1, True, True),
            (4, 1, 1, 1, True, True), (16, 1, 1, 1, True, True), (16, 1, 2, 1, True, True),
            (8, 1, 1, 1, True, True, True), (8, 1, 1, 1, True, False, True),
            (16, 1, 1, 1, True, True, True), (32, 1, 4, 1, True, True), (8, 2, 1, 1, True, True)]


def errors(fn, args, device):
    """fn(*args, output, new_state) on poisoned outputs: (both within 1e-2 of the float64
    oracle's largest value, (output error, state error)); NaN fails."""
    from fibkit.testing import gdn_decode_oracle, max_error_of_max, poisoned

    ref_out, ref_state = gdn_decode_oracle(*args)
    out, new_state = poisoned(DECODE, {"batch_size": args[0].shape[0]}, device)
    fn(*args, out, new_state)
    errs = max_error_of_max(out, ref_out), max_error_of_max(new_state, ref_state)
    return all(e < 1e-2 for e in errs), errs


def check_on_cpu():
    from fibkit.evaluate import interpreter
    from fibkit.testing import gdn_decode_inputs

    interpreter.patch()
    for batch, with_state in ((2, True), (3, False)):
        args = gdn_decode_inputs(batch, "cpu", seed=batch, with_state=with_state)
        for variant in VARIANTS:
            ok, errs = errors(lambda *a, c=variant: launch(c, *a), args, "cpu")
            assert ok, (variant, errs)
            print(f"B {batch} state {with_state} {variant}: errors {errs[0]:.1e} / {errs[1]:.1e}")


def cuda_variants():
    """The CUDA solution's kernel.cu built with each variant's -D flags (in parallel), as name -> call."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(len(CUDA_VARIANTS)) as pool:  # builds in parallel, loaded below
        list(pool.map(_build_only, CUDA_VARIANTS.items()))
    return {name: _build_cuda((name, flags)).kernel for name, flags in CUDA_VARIANTS.items()}


def _build_cuda(item):
    from pathlib import Path
    from torch.utils.cpp_extension import load

    name, flags = item
    tag = name.replace(" ", "_")
    out = Path(f"/tmp/gdn_decode_cuda/{tag}")
    out.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parent.parent
    # A flag "source=PATH" (from the project root) builds another kernel.cu, e.g. an earlier version.
    sources = [f.split("=", 1)[1] for f in flags if f.startswith("source=")]
    flags = [f for f in flags if not f.startswith("source=")]
    source = root / (sources[0] if sources else f"fibkit/solutions/{DECODE}/cuda/kernel.cu")
    module = load(name=f"gdn_decode_{tag}", sources=[str(source)], build_directory=str(out),
                  extra_cuda_cflags=flags + ["-O3", "-lineinfo"], verbose=False)
    return module


def _build_only(item):
    _build_cuda(item)  # a module does not pickle back to the parent


# The CUDA solution's kernel.cu as it ships ("cu default") and forced to one (rows per warp,
# warps per block, lanes per row, gate first: g scales the state before the dots, else in the
# stores) at every batch size.
CUDA_VARIANTS = {"cu default": []} | {
    f"cu r{rows} w{warps} l{lanes} g{int(first)}": [f"-DGDN_DECODE_ROWS={rows}", f"-DGDN_DECODE_WARPS={warps}",
                                                  f"-DGDN_DECODE_LANES={lanes}", f"-DGDN_DECODE_GATE_FIRST={str(first).lower()}"]
    for rows, warps, lanes in ((4, 4, 8), (4, 8, 8), (8, 1, 32), (16, 1, 16)) for first in (True, False)}
# An earlier kernel beside it: a flag "source=PATH" (from the project root; an untracked file
# there travels to the device) builds that file instead, e.g. v3's kernel saved with
# git show 42ad0d8:fibkit/solutions/gdn_decode_qk4_v8_d128_k_last/cuda/kernel.cu > v3.cu and
# CUDA_VARIANTS["cu v3"] = ["source=v3.cu"] (how the v4 sweeps compared the two).


def sweep(batches, variants):
    """variants: name -> fn(*inputs, output, new_state); each checked, then timed, per B."""
    from fibkit import catalog
    from fibkit.evaluate.peers import external_peer
    from fibkit.evaluate.timing import method, time_us
    from fibkit.testing import gdn_decode_inputs

    solution = importlib.import_module(f"fibkit.solutions.{DECODE}.triton.main")
    peers = {name: external_peer(name, DECODE) for name in ("fla", "flashinfer")}
    names = list(variants)
    for name in names:  # without a state, at a batch size no row block divides evenly into
        ok, errs = errors(variants[name], gdn_decode_inputs(3, "cuda", seed=7, with_state=False), "cuda")
        if not ok:
            print(f"    {name}: WRONG without a state, errors {errs[0]:.1e} / {errs[1]:.1e}")
    print(f"## GDN decode variants ({method()}), us; Triton (BV, STEPS, warps, STAGES, FUSED, "
          "ROWS_FIRST, STREAM_STORE, LOAD_HINT)\n")
    print("| B | floor | copy | triton | " + " | ".join(names) + " | fla | flashinfer | best | best TB/s |")
    print("| --- " * (len(names) + 8) + "|")
    for batch in batches:
        args = gdn_decode_inputs(batch, "cuda", seed=batch)
        out = torch.empty(batch, 1, 8, 128, dtype=torch.bfloat16, device="cuda")
        new_state = torch.empty(batch, 8, 128, 128, device="cuda")
        state_bytes = 2 * new_state.numel() * 4
        # The practical ceiling: the state copied once (its read and write, nothing else).
        copy = time_us(lambda src, dst: dst.copy_(src), [args[3], new_state])
        row = [time_us(solution.run, args + [out, new_state])]
        for name in names:
            ok, errs = errors(variants[name], args, "cuda")
            if not ok:
                print(f"    {name}: WRONG at B = {batch}, errors {errs[0]:.1e} / {errs[1]:.1e}")
                row.append(float("nan"))
                continue
            row.append(time_us(variants[name], args + [out, new_state]))
        for peer in peers.values():
            row.append(time_us(peer.fn, peer.arguments(args)) if peer else float("nan"))
        ours = row[1:1 + len(names)]
        best = min(range(len(ours)), key=lambda i: ours[i] if ours[i] == ours[i] else float("inf"))
        print(f"| {batch} | {state_bytes / catalog.COPY_BYTES_PER_S * 1e6:.2f} | {copy:.2f} | "
              + " | ".join(f"{t:.2f}" for t in row)
              + f" | {names[best]} | {state_bytes / ours[best] / 1e6:.2f} |", flush=True)


def triton_variants(configs):
    return {str(c): (lambda *a, c=c: launch(c, *a)) for c in configs}


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv == ["check"]:
        check_on_cpu()
    else:
        batches = [int(b) for b in argv if b.isdigit()] or [1, 4, 8, 16, 32, 48, 64, 128, 256]
        if "hints" in argv:  # the state's cache hints on the flat-grid kernel, each twice (noise)
            chosen = triton_variants([(8, 1, 1, 1, False, True, st, lh) for st in (False, True)
                                      for lh in (0, 1, 2)] * 2)
        elif "cuda" in argv:  # the CUDA solution's kernel in several shapes beside the Triton one
            chosen = cuda_variants()
        else:
            chosen = triton_variants(VARIANTS)
        sweep(batches, chosen)
