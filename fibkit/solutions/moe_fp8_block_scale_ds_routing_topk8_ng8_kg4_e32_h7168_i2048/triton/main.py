"""DeepSeek-V3 fp8 block-scale MoE on one EP rank: four Triton kernels, replayed as one CUDA graph.

Shapes: routing_logits [T, 256] fp32; routing_bias [256] bf16; hidden_states [T, H=7168] fp8
with hidden_states_scale [H/128, T] fp32 (one scale per token per 128 of hidden);
gemm1_weights [E=32, 2I=4096, H] fp8 with scales [E, 2I/128, H/128]; gemm2_weights [E, H,
I=2048] fp8 with scales [E, H/128, I/128]; output [T, H] bf16.

1. `route_kernel`, BT tokens per program: sigmoid + bias; group score = the sum of each group's
   2 best; the best 4 of 8 groups kept; the best 8 experts among them (ties to the lower
   index); weights from the unbiased sigmoid, normalized, times the scaling factor. Each
   (token, local expert) pair takes a slot in its expert's list with an atomic counter: lists
   of capacity T ([E, T] pair_token / pair_weight) need no prefix sum, and the token keeps the
   pair's code (expert * T + slot) in pair_code [T, 8] for step 4.
2. `gemm1_kernel`: programs walk the tiles (expert, n, m) of all the experts' lists, m fastest
   so that a weight tile is read from DRAM once and from L2 for the expert's other row tiles.
   Tiles come from the counters in the kernel (no host sync); an expert no token picked has
   no tiles, so its weights are never read. Weights arrive by TMA, the gathered token rows by
   pointer loads. fp8 x fp8 dots per 128 of K, scaled by the token's and the weight block's
   scales, accumulate in fp32; up and gate are two accumulators of one tile. At T <= 4 each
   tile's K is split over 4 programs (the last to arrive sums the parts in split order). The
   epilogue computes silu(gate) * up and writes it as two fp8 planes with one scale per row
   per tile: the value's e4m3 rounding, and the rounding of what that left (near bf16's
   precision; `_PLANES` lists the other formats). Rows are compact, in expert order: row =
   (pairs of lower experts) + slot.
3. `gemm2_kernel`: the same walk over [H] outputs, fp8 x fp8: both planes' dots go into one
   block sum, scaled by the row's and the weight block's scales. The epilogue multiplies by the
   routing weight and writes each pair's row of y [pairs, H] in bf16.
4. `combine_kernel`: each token sums its pairs' rows in top-k order in fp32 (no atomics, so
   the output does not depend on the slot order the atomics gave) and writes bf16; a token
   with no local expert gets zeros.

Each pair's row is computed independently of where its slot put it, so outputs are bitwise
identical across runs. `run` replays the four launches (and the counter memset) as a CUDA
graph once it has seen the same arguments twice: a graph launch has no per-kernel host gap,
and every replay recomputes everything from the current contents of the inputs.
"""
from collections import OrderedDict

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
from triton.tools.tensor_descriptor import TensorDescriptor

BLOCK = 128  # quantization block of activations and weights
NUM_EXPERTS, N_GROUP, TOPK_GROUP, TOP_K = 256, 8, 4, 8


@triton.jit
def _after_predecessors(PDL: tl.constexpr):
    """Programmatic dependent launch (config pdl; the kernel launched with launch_pdl): let the
    next kernel's programs start now, then wait until the previous kernel has finished and its
    writes are visible. Every kernel calls this before its first read, so each reads only what
    finished kernels wrote; the wait ends once the previous kernel does, and that kernel's
    programs are all running or done before this one may start."""
    if PDL:
        gdc_launch_dependents()
        gdc_wait()


@triton.jit
def route_kernel(logits_ptr, bias_ptr, counts_ptr, pair_token_ptr, pair_weight_ptr,
                 pair_code_ptr, num_tokens, local_offset, scaling,
                 BT: tl.constexpr, LOCAL: tl.constexpr, E: tl.constexpr, G: tl.constexpr,
                 TOPK_GROUP: tl.constexpr, TOP_K: tl.constexpr, PDL: tl.constexpr):
    _after_predecessors(PDL)
    GS: tl.constexpr = E // G
    rows = tl.program_id(0) * BT + tl.arange(0, BT)
    live = rows < num_tokens
    experts = tl.arange(0, E)
    x = tl.load(logits_ptr + rows[:, None].to(tl.int64) * E + experts[None, :],
                mask=live[:, None], other=0.0)
    s = tl.sigmoid(x)
    biased = s + tl.load(bias_ptr + experts).to(tl.float32)[None, :]

    # Group score: the sum of the group's two best (a tied best counts twice, as topk(2)).
    grouped = tl.reshape(biased, (BT, G, GS))
    j = tl.arange(0, GS)[None, None, :]
    best = tl.max(grouped, axis=2)
    first = tl.min(tl.where(grouped == best[:, :, None], j, GS), axis=2)
    second = tl.max(tl.where(j == first[:, :, None], float("-inf"), grouped), axis=2)
    group_score = best + second  # [BT, G]
    # A group is kept when fewer than TOPK_GROUP groups beat it (ties to the lower group).
    g = tl.arange(0, G)
    other, this = group_score[:, None, :], group_score[:, :, None]
    beats = (other > this) | ((other == this) & (g[None, None, :] < g[None, :, None]))
    kept = tl.sum(beats.to(tl.int32), axis=2) < TOPK_GROUP
    kept_e = tl.reshape(tl.broadcast_to(kept[:, :, None], (BT, G, GS)), (BT, E))
    cand = tl.where(kept_e, biased, float("-inf"))

    # The best TOP_K experts, one arg-max at a time (ties to the lower expert).
    k = tl.arange(0, TOP_K)[None, :]
    picked = tl.zeros((BT, TOP_K), dtype=tl.int32)
    weight = tl.zeros((BT, TOP_K), dtype=tl.float32)
    for step in tl.static_range(TOP_K):
        top = tl.max(cand, axis=1)
        idx = tl.min(tl.where(cand == top[:, None], experts[None, :], E), axis=1)
        hit = experts[None, :] == idx[:, None]
        picked = tl.where(k == step, idx[:, None], picked)
        weight = tl.where(k == step, tl.sum(tl.where(hit, s, 0.0), axis=1)[:, None], weight)
        cand = tl.where(hit, float("-inf"), cand)
    weight = weight / (tl.sum(weight, axis=1)[:, None] + 1e-20) * scaling

    local = picked - local_offset
    mine = (local >= 0) & (local < LOCAL) & live[:, None]
    slot = tl.atomic_add(counts_ptr + local, 1, mask=mine)
    code = local * num_tokens + slot
    tl.store(pair_token_ptr + code, tl.broadcast_to(rows[:, None], (BT, TOP_K)), mask=mine)
    tl.store(pair_weight_ptr + code, weight, mask=mine)
    tl.store(pair_code_ptr + rows[:, None] * TOP_K + k, tl.where(mine, code, -1),
             mask=live[:, None])


@triton.jit
def _expert_gemm(a_ptr, a_desc, a_scale_ptr, w_desc, w_scale_ptr, out_ptr, out_scale_ptr,
                 counts_ptr, pair_token_ptr, pair_weight_ptr, num_tokens, N, K,
                 part_ptr, arrivals_ptr, split_stride,
                 GEMM1: tl.constexpr, PLANES: tl.constexpr, A_QB: tl.constexpr,
                 LOCAL: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                 BK: tl.constexpr, SUB: tl.constexpr, QB: tl.constexpr, NUM_PROGS: tl.constexpr,
                 SWAP: tl.constexpr, SPLIT: tl.constexpr, PDL: tl.constexpr):
    """Both grouped GEMMs; see gemm1_kernel and gemm2_kernel for what each computes. Programs
    walk the tiles (expert, n, m), m fastest. A loop step covers BK of K in BK / SUB sub-steps
    of SUB <= QB (one weight scale each): adjacent sub-steps' loads leave together, so each
    weight row is read in runs of BK bytes. SWAP (bf16 GEMM2) computes the transposed tile
    w a^T: the weights, widened to bf16 in registers, are the MMA's register operand, so they
    make no round trip through shared memory, and few rows still fill the MMA's N side.

    SPLIT > 1 (small T: too few tiles to keep every SM streaming weights): each tile's K is
    split SPLIT ways over as many programs. Each writes its fp32 partials (GEMM1: up and gate)
    to `part` [SPLIT, max_pairs, 2N for GEMM1, N for GEMM2], then counts itself in the tile's
    arrival counter (zeroed for the call); the last to arrive adds the SPLIT partials in split
    order (the same sum whichever program is last) and writes the tile's output. No program
    waits on another."""
    _after_predecessors(PDL)
    experts = tl.arange(0, LOCAL)
    count = tl.load(counts_ptr + experts)
    m_tiles = (count + BM - 1) // BM
    tiles = m_tiles * (N // BN)
    tile_end = tl.cumsum(tiles, 0)
    row_end = tl.cumsum(count, 0)
    w_rows = 2 * N if GEMM1 else N
    kq = K // QB
    offs_k = tl.arange(0, SUB)
    for work in range(tl.program_id(0), tl.sum(tiles) * SPLIT, NUM_PROGS):
        tile, split = work // SPLIT, work % SPLIT
        e = tl.sum((tile_end <= tile).to(tl.int32))
        this = experts == e
        in_expert = tile - tl.sum(tl.where(this, tile_end - tiles, 0))
        e_m_tiles = tl.sum(tl.where(this, m_tiles, 0))
        first_slot = (in_expert % e_m_tiles) * BM
        slots = first_slot + tl.arange(0, BM)
        live = slots < tl.sum(tl.where(this, count, 0))
        first_row = tl.sum(tl.where(this, row_end - count, 0)) + first_slot
        rows = first_row + tl.arange(0, BM)  # compact, in expert order
        n0 = (in_expert // e_m_tiles) * BN
        w_row = e * w_rows + n0
        ws_ptrs = w_scale_ptr + e * (w_rows // QB) * kq + (n0 // QB) * kq  # BN <= QB: one scale
        if GEMM1:
            token = tl.load(pair_token_ptr + e * num_tokens + slots, mask=live, other=0)
            a_ptrs = a_ptr + token.to(tl.int64)[:, None] * K + offs_k[None, :]
            a_scale_ptrs = a_scale_ptr + token
            wg_scale_ptrs = ws_ptrs + (N // QB) * kq
        else:
            a_scale_ptrs = a_scale_ptr + rows * (K // A_QB)
        acc = tl.zeros((BN, BM) if SWAP else (BM, BN), dtype=tl.float32)
        gate = tl.zeros((BM, BN), dtype=tl.float32)
        k_span = K // SPLIT
        for k0 in range(split * k_span, (split + 1) * k_span, BK):
            for sub in tl.static_range(BK // SUB):
                k = k0 + sub * SUB
                w = w_desc.load([w_row, k])
                w_scale = tl.load(ws_ptrs + k // QB)
                if GEMM1:
                    a = tl.load(a_ptrs + k, mask=live[:, None], other=0.0)
                    a_scale = tl.load(a_scale_ptrs + (k // QB) * num_tokens, mask=live,
                                      other=0.0)
                    wg = w_desc.load([w_row + N, k])
                    wg_scale = tl.load(wg_scale_ptrs + k // QB)
                    acc += tl.dot(a, tl.trans(w)) * (a_scale * w_scale)[:, None]
                    gate += tl.dot(a, tl.trans(wg)) * (a_scale * wg_scale)[:, None]
                elif PLANES > 0:
                    a = a_desc.load([first_row, k])
                    a_scale = tl.load(a_scale_ptrs + k // A_QB, mask=live, other=0.0)
                    part = tl.dot(a, tl.trans(w))
                    if PLANES == 2:  # the low plane (same scale) into the same block sum
                        part = tl.dot(a_desc.load([first_row, K + k]), tl.trans(w), part)
                    acc += part * (a_scale * w_scale)[:, None]
                elif SWAP:
                    a = a_desc.load([first_row, k])
                    acc += tl.dot(w.to(tl.bfloat16), tl.trans(a)) * w_scale
                else:
                    a = a_desc.load([first_row, k])
                    acc += tl.dot(a, tl.trans(w.to(tl.bfloat16))) * w_scale
        out_row = N * PLANES if GEMM1 and PLANES > 0 else N
        out_ptrs = out_ptr + rows.to(tl.int64)[:, None] * out_row + n0 + tl.arange(0, BN)[None, :]
        last = True
        if SPLIT > 1:
            cols = n0 + tl.arange(0, BN)[None, :]
            part_rows = part_ptr + rows.to(tl.int64)[:, None] * (2 * N if GEMM1 else N) + cols
            stride = split_stride  # one split's partials: max_pairs x (2N or N)
            tl.store(part_rows + split * stride, acc, mask=live[:, None])
            if GEMM1:
                tl.store(part_rows + split * stride + N, gate, mask=live[:, None])
            # Every thread's partials stored before the arrival is counted (the barrier), which
            # releases them at GPU scope; the last to arrive acquires the others'.
            tl.debug_barrier()
            last = tl.atomic_add(arrivals_ptr + tile, 1, sem="acq_rel", scope="gpu") == SPLIT - 1
            if last:
                acc = tl.zeros((BM, BN), dtype=tl.float32)
                gate = tl.zeros((BM, BN), dtype=tl.float32)
                for s in range(SPLIT):
                    acc += tl.load(part_rows + s * stride, mask=live[:, None], other=0.0)
                    if GEMM1:
                        gate += tl.load(part_rows + s * stride + N, mask=live[:, None], other=0.0)
        if GEMM1:
            if last:
                acc = gate / (1.0 + tl.exp(-gate)) * acc  # silu of the second half times the first
                if PLANES > 0:
                    scale = tl.maximum(tl.max(tl.abs(acc), axis=1), 1e-30) / 448.0
                    tl.store(out_scale_ptr + rows * (N // BN) + n0 // BN, scale, mask=live)
                    scaled = acc / scale[:, None]
                    high = scaled.to(tl.float8e4nv)
                    tl.store(out_ptrs, high, mask=live[:, None])
                    if PLANES == 2:  # what the high plane's 3 mantissa bits left, same scale
                        low = (scaled - high.to(tl.float32)).to(tl.float8e4nv)
                        tl.store(out_ptrs + N, low, mask=live[:, None])
                else:
                    tl.store(out_ptrs, acc.to(tl.bfloat16), mask=live[:, None])
        elif last:
            weight = tl.load(pair_weight_ptr + e * num_tokens + slots, mask=live, other=0.0)
            if SWAP:
                out_t = out_ptr + rows.to(tl.int64)[None, :] * N + n0 + tl.arange(0, BN)[:, None]
                tl.store(out_t, (acc * weight[None, :]).to(tl.bfloat16), mask=live[None, :])
            else:
                tl.store(out_ptrs, (acc * weight[:, None]).to(tl.bfloat16), mask=live[:, None])


@triton.jit
def gemm1_kernel(x_ptr, x_scale_ptr, w_desc, w_scale_ptr, out_ptr, out_scale_ptr, counts_ptr,
                 pair_token_ptr, num_tokens, N, K, part_ptr, arrivals_ptr, split_stride,
                 PLANES: tl.constexpr, LOCAL: tl.constexpr,
                 BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, SUB: tl.constexpr,
                 QB: tl.constexpr, NUM_PROGS: tl.constexpr, SPLIT: tl.constexpr, PDL: tl.constexpr):
    """out[row, :N] = silu(x w_gate^T) * (x w_up^T) for each pair's row: x = the pair's token's
    hidden row (fp8 [T, K], gathered; scales [K/QB, T]); w [E, 2N, K] fp8 through a TMA
    descriptor over [E * 2N, K], one scale per QB x QB block; up = rows [0, N), gate = [N, 2N).
    out: bf16 [pairs, N] (PLANES 0), or fp8 [pairs, PLANES * N] with one scale per row per BN
    columns: the value's e4m3 rounding in [0, N) and, for PLANES 2, the rounding of what it
    left in [N, 2N). SPLIT: K in that many parts (see _expert_gemm)."""
    _expert_gemm(x_ptr, x_ptr, x_scale_ptr, w_desc, w_scale_ptr, out_ptr, out_scale_ptr,
                 counts_ptr, pair_token_ptr, pair_token_ptr, num_tokens, N, K,
                 part_ptr, arrivals_ptr, split_stride, True, PLANES, QB,
                 LOCAL, BM, BN, BK, SUB, QB, NUM_PROGS, False, SPLIT, PDL)


@triton.jit
def gemm2_kernel(a_desc, a_scale_ptr, w_desc, w_scale_ptr, y_ptr, counts_ptr, pair_weight_ptr,
                 num_tokens, N, K, part_ptr, arrivals_ptr, split_stride,
                 PLANES: tl.constexpr, A_QB: tl.constexpr,
                 LOCAL: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                 SUB: tl.constexpr, QB: tl.constexpr, NUM_PROGS: tl.constexpr,
                 SWAP: tl.constexpr, SPLIT: tl.constexpr, PDL: tl.constexpr):
    """y[row, :N] = routing weight * (a w^T) in bf16: a = the pair's intermediate row through a
    TMA descriptor (bf16, or PLANES fp8 planes with scales [rows, K/A_QB], summed in each
    block's dot); w [E, N, K] fp8 (widened to bf16 for a bf16 a), one scale per QB x QB block.
    SPLIT: K in that many parts (see _expert_gemm; not with SWAP)."""
    _expert_gemm(y_ptr, a_desc, a_scale_ptr, w_desc, w_scale_ptr, y_ptr, a_scale_ptr,
                 counts_ptr, counts_ptr, pair_weight_ptr, num_tokens, N, K,
                 part_ptr, arrivals_ptr, split_stride, False, PLANES, A_QB,
                 LOCAL, BM, BN, BK, SUB, QB, NUM_PROGS, SWAP, SPLIT, PDL)


@triton.jit
def combine_kernel(y_ptr, counts_ptr, pair_code_ptr, out_ptr, num_tokens,
                   H: tl.constexpr, LOCAL: tl.constexpr, TOP_K: tl.constexpr, BH: tl.constexpr,
                   PDL: tl.constexpr):
    """out[t, cols] = the sum of the token's pairs' rows of y, in top-k order; only the pairs
    the token has are read."""
    _after_predecessors(PDL)
    t = tl.program_id(0)
    cols = tl.program_id(1) * BH + tl.arange(0, BH)
    experts = tl.arange(0, LOCAL)
    count = tl.load(counts_ptr + experts)
    first_row = tl.cumsum(count, 0) - count
    acc = tl.zeros((BH,), dtype=tl.float32)
    for k in tl.static_range(TOP_K):
        code = tl.load(pair_code_ptr + t * TOP_K + k)
        if code >= 0:
            row = tl.sum(tl.where(experts == code // num_tokens, first_row, 0)) + code % num_tokens
            acc += tl.load(y_ptr + row.to(tl.int64) * H + cols).to(tl.float32)
    tl.store(out_ptr + t.to(tl.int64) * H + cols, acc.to(tl.bfloat16))


def _sm_count(device) -> int:
    if device.type != "cuda":
        return 4  # the interpreter runs programs one after another; a few exercise the loop
    return torch.cuda.get_device_properties(device).multi_processor_count


# Tile shapes by token count (H200 sweep: benchmarks/sweep_moe.py, docs/perf-notes.md). Small T
# streams weights: thin row tiles, many narrow column tiles. Large T is tensor-core work.
# progs_per_sm None: one program per possible tile (the hardware hands tiles to free SMs);
# a number: that many persistent programs per SM walk the tiles.
def _tile(bm, bn, bk, warps, stages, per_sm, swap=False, split=1):
    return dict(BM=bm, BN=bn, BK=bk, num_warps=warps, num_stages=stages, progs_per_sm=per_sm,
                swap=swap, split=split)


def launch_config(tokens: int) -> dict:
    """intermediate: how GEMM1 hands its output to GEMM2 (see _PLANES)."""
    if tokens <= 128:
        # A token or two hit one or two experts: 16 GEMM1 tiles each, too few for the SMs, so
        # K is split 4 ways (T = 1: 65 -> 57 us); from T = 7 on, splitting costs more than it
        # gives. 128-column tiles read longer weight runs than 64 (T = 80: 320 -> 295 us).
        gemm1 = _tile(16, 128, 128, 4, 4, 3, split=4 if tokens <= 4 else 1)
        gemm2 = _tile(16, 128, 128, 4, 4, None)
    elif tokens <= 2048:
        gemm1, gemm2 = _tile(32, 128, 128, 4, 4, 2), _tile(64, 128, 128, 4, 3, 2)
    else:
        # swap: for the bf16 intermediate (the fp8 planes' GEMM2 does not transpose).
        gemm1, gemm2 = _tile(128, 128, 128, 8, 3, 1), _tile(128, 128, 128, 8, 4, 1, swap=True)
    # Routing: a token per one-warp program (its reductions stay in the warp): 7 -> 3.5 us at
    # T <= 80.
    # engine "auto": gluon_gemms.py's wgmma kernels from GLUON_FROM_TOKENS on a Hopper GPU,
    # these Triton GEMMs otherwise (and on any other GPU, or in the interpreter).
    # pdl: the route, Triton GEMM and combine kernels launched with programmatic dependent
    # launch (each starts while the previous one drains; _after_predecessors): H200, seed 1,
    # 3-4 us off every call at T = 1-16 (T = 1: 53.2 -> 49.3 us, T = 7: 105.5 -> 101.1).
    return dict(engine="auto", gemm1=gemm1, gemm2=gemm2, intermediate="fp8_pair",
                gluon_consumers=3, gluon_stages=None, pdl=True,
                route_tokens=1, route_warps=1, combine_cols=1024, combine_warps=4)


# H200, both dataset seeds (perf notes v11): the gluon engine (3 consumers) wins at T = 11948
# and 14107 (5-11%), loses at T = 4096 (940 against 864 us), 901 and 80.
GLUON_FROM_TOKENS = 8192


def pick_engine(engine: str, tokens: int, device) -> str:
    """The GEMM engine a call runs: "auto" resolves by T and the GPU (no host sync: shapes and
    the device's capability only); "gluon" anywhere but Hopper is an error."""
    if engine not in ("auto", "triton", "gluon"):
        raise ValueError(f"moe: engine {engine!r} must be 'auto', 'triton' or 'gluon'")
    hopper = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9
    if engine == "auto":
        return "gluon" if hopper and tokens >= GLUON_FROM_TOKENS else "triton"
    if engine == "gluon" and not hopper:
        raise ValueError("moe: the gluon engine runs on Hopper (sm_90) GPUs only")
    return engine


# The intermediate's formats. "bf16": GEMM2 widens the fp8 weights to bf16 in registers and
# runs bf16 MMAs. "fp8": one e4m3 plane per row with one scale per row per GEMM1 column tile,
# as serving stacks do; GEMM2 is an fp8 GEMM (2.4x faster at 12k tokens) but ~2.3% relative
# error (bf16: 0.3%). "fp8_pair": a second e4m3 plane holds the rounding error of the first at
# the same scale (hi + lo keeps ~7 mantissa bits, near bf16): two fp8 MMAs per block into one
# block sum, no widening.
_PLANES = {"bf16": 0, "fp8": 1, "fp8_pair": 2}


def _tile_bound(local, max_pairs, n, cfg):
    """Upper bound of a GEMM's tiles: one partial row tile per expert with pairs, plus full ones."""
    return (min(local, max_pairs) + max_pairs // cfg["BM"]) * (n // cfg["BN"])


def _gemm_grid(local, max_pairs, n, cfg, sms):
    work = _tile_bound(local, max_pairs, n, cfg) * cfg.get("split", 1)
    per_sm = cfg["progs_per_sm"]
    return max(1, work if per_sm is None else min(work, sms * per_sm))


def _check_tile(cfg, n, k, a_qb):
    bm, bn, bk = cfg["BM"], cfg["BN"], cfg["BK"]
    sub = min(bk, BLOCK, a_qb)
    if bn > BLOCK or bk % sub or n % bn or k % bk:
        raise ValueError(f"moe: tile {bm}x{bn}x{bk} must have BN <= {BLOCK} (one scale per "
                         f"step), BK a multiple of min({BLOCK}, activation scale block {a_qb}) "
                         f"and dividing {k}, BN dividing {n}")
    return sub


def launch(routing_logits, routing_bias, hidden_states, hidden_states_scale, gemm1_weights,
           gemm1_weights_scale, gemm2_weights, gemm2_weights_scale, local_expert_offset,
           routed_scaling_factor, output, config=None):
    """Enqueue the kernels (no host sync). `config` overrides launch_config's entries; its
    engine picks the GEMMs: "triton" (these, any GPU and the interpreter) or "gluon" (Hopper's
    wgmma in gluon_gemms.py, after a permute that makes each expert's rows contiguous)."""
    tokens, hidden = hidden_states.shape
    local, inter = gemm1_weights.shape[0], gemm2_weights.shape[2]
    if tokens == 0:
        return
    cfg = dict(launch_config(tokens), **(config or {}))
    dev = hidden_states.device
    engine = pick_engine(cfg["engine"], tokens, dev)
    # griddepcontrol is sm_90+; the interpreter and older GPUs launch plainly (same results).
    pdl = bool(cfg["pdl"]) and dev.type == "cuda" and torch.cuda.get_device_capability(dev)[0] >= 9
    launch_pdl = {"launch_pdl": True} if pdl else {}
    sms = _sm_count(dev)
    max_pairs = tokens * min(TOP_K, local)
    # The experts' pair counters and, for a split Triton GEMM, its tiles' arrival counters:
    # zeroed together, per call.
    arrivals = [_tile_bound(local, max_pairs, n, cfg[g]) if engine == "triton" and cfg[g].get("split", 1) > 1
                else 0 for g, n in (("gemm1", inter), ("gemm2", hidden))]
    counters = torch.zeros(local + sum(arrivals), dtype=torch.int32, device=dev)
    counts = counters[:local]
    pair_token = torch.empty(local * tokens, dtype=torch.int32, device=dev)
    pair_weight = torch.empty(local * tokens, dtype=torch.float32, device=dev)
    pair_code = torch.empty(tokens, TOP_K, dtype=torch.int32, device=dev)
    y = torch.empty(max_pairs, hidden, dtype=torch.bfloat16, device=dev)

    bt = cfg["route_tokens"]
    route_kernel[(triton.cdiv(tokens, bt),)](
        routing_logits, routing_bias, counts, pair_token, pair_weight, pair_code, tokens,
        int(local_expert_offset), float(routed_scaling_factor), BT=bt, LOCAL=local,
        E=NUM_EXPERTS, G=N_GROUP, TOPK_GROUP=TOPK_GROUP, TOP_K=TOP_K, PDL=pdl,
        num_warps=cfg["route_warps"], **launch_pdl)
    if engine == "gluon":
        from .gluon_gemms import gemms

        gemms(hidden_states, hidden_states_scale, counts, pair_token, pair_weight, gemm1_weights,
              gemm1_weights_scale, gemm2_weights, gemm2_weights_scale, y, sms,
              stages=cfg["gluon_stages"], consumers=cfg["gluon_consumers"])
    else:
        arrivals1 = counters[local:local + arrivals[0]] if arrivals[0] else counts
        arrivals2 = counters[local + arrivals[0]:] if arrivals[1] else counts
        _triton_gemms(cfg, hidden_states, hidden_states_scale, gemm1_weights, gemm1_weights_scale,
                      gemm2_weights, gemm2_weights_scale, counts, arrivals1, arrivals2, pair_token,
                      pair_weight, y, sms, pdl)
    bh = min(cfg["combine_cols"], hidden)
    if hidden % bh:
        raise ValueError(f"moe: combine_cols {bh} must divide the hidden size {hidden}")
    combine_kernel[(tokens, hidden // bh)](y, counts, pair_code, output, tokens, H=hidden,
                                           LOCAL=local, TOP_K=TOP_K, BH=bh, PDL=pdl,
                                           num_warps=cfg["combine_warps"], **launch_pdl)


def _triton_gemms(cfg, hidden_states, hidden_states_scale, gemm1_weights, gemm1_weights_scale,
                  gemm2_weights, gemm2_weights_scale, counts, arrivals1, arrivals2, pair_token,
                  pair_weight, y, sms, pdl=False):
    """GEMM1 and GEMM2 as the Triton kernels above: y gets each pair's row. arrivals1 / 2: the
    split GEMMs' zeroed tile counters (any int32 tensor for an unsplit one). pdl: launched
    with programmatic dependent launch."""
    launch_pdl = {"launch_pdl": True} if pdl else {}
    tokens, hidden = hidden_states.shape
    local, inter = gemm1_weights.shape[0], gemm2_weights.shape[2]
    dev = hidden_states.device
    max_pairs = y.shape[0]
    c1, c2 = cfg["gemm1"], cfg["gemm2"]
    split1, split2 = c1.get("split", 1), c2.get("split", 1)
    for name, split, k, c in (("GEMM1", split1, hidden, c1), ("GEMM2", split2, inter, c2)):
        if split < 1 or k % (split * c["BK"]):
            raise ValueError(f"moe: {name} split {split} must be >= 1 with split x BK dividing {k}")
    # The intermediate: bf16, or fp8 with one scale per row per GEMM1 column tile.
    inter_bn = c1["BN"]
    planes = _PLANES.get(cfg["intermediate"])
    if planes is None:
        raise ValueError(f"moe: intermediate {cfg['intermediate']!r} must be one of {sorted(_PLANES)}")
    if planes:
        inter_rows = torch.empty(max_pairs, planes * inter, dtype=torch.float8_e4m3fn, device=dev)
    else:
        inter_rows = torch.empty(max_pairs, inter, dtype=torch.bfloat16, device=dev)
    scale_rows = max_pairs if planes else 1  # bf16: a placeholder argument
    inter_scale = torch.empty(scale_rows, inter // inter_bn, dtype=torch.float32, device=dev)
    part1 = torch.empty(split1 * max_pairs * 2 * inter if split1 > 1 else 1, dtype=torch.float32, device=dev)
    part2 = torch.empty(split2 * max_pairs * hidden if split2 > 1 else 1, dtype=torch.float32, device=dev)
    sub1 = _check_tile(c1, inter, hidden, BLOCK)
    progs1 = _gemm_grid(local, max_pairs, inter, c1, sms)
    gemm1_kernel[(progs1,)](
        hidden_states, hidden_states_scale,
        TensorDescriptor.from_tensor(gemm1_weights.view(-1, hidden), [c1["BN"], sub1]),
        gemm1_weights_scale, inter_rows, inter_scale, counts, pair_token, tokens, inter, hidden,
        part1, arrivals1, max_pairs * 2 * inter,
        PLANES=planes, LOCAL=local, BM=c1["BM"], BN=c1["BN"], BK=c1["BK"], SUB=sub1,
        QB=BLOCK, NUM_PROGS=progs1, SPLIT=split1, PDL=pdl, num_warps=c1["num_warps"],
        num_stages=c1["num_stages"], **launch_pdl)
    a_qb = inter_bn if planes else inter
    sub2 = _check_tile(c2, hidden, inter, a_qb)
    swap = c2["swap"] and not planes
    if swap and split2 > 1:
        raise ValueError("moe: GEMM2 splits K only without swap (the fp8 intermediates)")
    progs2 = _gemm_grid(local, max_pairs, hidden, c2, sms)
    gemm2_kernel[(progs2,)](
        TensorDescriptor.from_tensor(inter_rows, [c2["BM"], sub2]), inter_scale,
        TensorDescriptor.from_tensor(gemm2_weights.view(-1, inter), [c2["BN"], sub2]),
        gemm2_weights_scale, y, counts, pair_weight, tokens, hidden, inter,
        part2, arrivals2, max_pairs * hidden,
        PLANES=planes, A_QB=a_qb, LOCAL=local, BM=c2["BM"], BN=c2["BN"], BK=c2["BK"],
        SUB=sub2, QB=BLOCK, NUM_PROGS=progs2, SWAP=swap, SPLIT=split2, PDL=pdl,
        num_warps=c2["num_warps"], num_stages=c2["num_stages"], **launch_pdl)


class GraphCache:
    """CUDA graphs of `launch`, keyed by everything the launches bake in: every tensor's
    pointer, shape, strides and dtype, and the scalars. A key seen for the first time runs
    eagerly (that also compiles the kernels); the second time it is captured, then replayed.
    A replay reads the inputs' current contents, so it recomputes, never reuses, results.
    Under an enclosing capture (a serving engine's own graph) the kernels are launched
    eagerly into it."""

    def __init__(self, fn, size=4):
        self.fn, self.size = fn, size
        self.entries = OrderedDict()  # key -> None (seen once) or a captured graph

    @staticmethod
    def key(args):
        return tuple((a.data_ptr(), tuple(a.shape), a.stride(), a.dtype, a.device)
                     if isinstance(a, torch.Tensor) else a for a in args)

    def __call__(self, *args):
        if args[0].device.type != "cuda" or torch.cuda.is_current_stream_capturing():
            return self.fn(*args)
        key = self.key(args)
        if key not in self.entries:
            self.entries[key] = None
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
            return self.fn(*args)
        self.entries.move_to_end(key)
        graph = self.entries[key]
        if graph is None:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.fn(*args)
            self.entries[key] = graph
        graph.replay()


_graphs = GraphCache(launch)


def run(routing_logits, routing_bias, hidden_states, hidden_states_scale, gemm1_weights,
        gemm1_weights_scale, gemm2_weights, gemm2_weights_scale, local_expert_offset,
        routed_scaling_factor, output):
    """The contest entry point (destination-passing): writes output [T, 7168] bf16."""
    _graphs(routing_logits, routing_bias, hidden_states, hidden_states_scale, gemm1_weights,
            gemm1_weights_scale, gemm2_weights, gemm2_weights_scale, int(local_expert_offset),
            float(routed_scaling_factor), output)
