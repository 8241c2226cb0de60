"""The MoE's GEMMs on Hopper in Gluon (Triton's explicit-layout dialect; Triton compiles it for
sm_90a, so the solution stays `language = "triton"`): TMA rings fed by a loader warp, wgmma
consumer warpgroups, the fp8 block scales applied per 128 (or 64) of K. `gemms` runs them
between main.py's routing and combine (engine "gluon"; "auto" picks it from main.py's
GLUON_FROM_TOKENS on a Hopper GPU). docs/perf-notes.md, v11, has the measurements.

1. `permute_kernel` (plain Triton): each expert's rows contiguous (row_start[e] + slot, the
   combine's order), with their hidden scales and routing weights, so that TMA can load them.
2. `moe_gemm1_kernel`: tiles of 64 CONSUMERS rows (a warpgroup takes 64) x 64 intermediate
   columns: 64 up and 64 gate weight rows, two wgmma N = 64 per 128 of K. The epilogue writes
   SwiGLU as the fp8 pair: per 64 columns c0, the high plane in [2 c0, 2 c0 + 64) and the low
   plane (the high plane's rounding error) in [2 c0 + 64, 2 c0 + 128) of `pair` [rows, 2I], at
   one scale pair_scale[c0 / 64, row].
3. `moe_gemm2_kernel`: tiles of 64 CONSUMERS rows x 128 output columns; each 64-column K block
   sees its two planes side by side at one scale (two wgmma into one block sum), and the
   epilogue applies the routing weight.

Each consumer waits for its block's wgmma before scaling it into the tile's sum (fp8 sums
must be promoted per weight-scale block); with 3 consumers one's scaling overlaps the others'
MMAs. Weight streaming for small T (transposed tiles, split K) lost to the Triton GEMMs at
every size it was measured at and is not here (perf notes v11).
"""
import torch
import triton
import triton.language as tl
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

BN = gl.constexpr(128)  # output columns per tile
BK = gl.constexpr(128)  # K per block: one weight scale


@gluon.jit
def _tile_of(t, row_start_ptr, n_tiles, E, BM: gl.constexpr, TN: gl.constexpr = BN):
    """Tile t of the walk (experts in order; within one, (n, m) with m fastest): its expert,
    first row, first column and the expert's end row."""
    expert = 0
    local = 0
    first = 0
    base = 0
    for e in range(E):
        lo = gl.load(row_start_ptr + e)
        hi = gl.load(row_start_ptr + e + 1)
        tiles = (hi - lo + BM - 1) // BM * n_tiles
        here = (t >= base) & (t < base + tiles)
        expert = gl.where(here, e, expert)
        local = gl.where(here, t - base, local)
        first = gl.where(here, lo, first)
        base += tiles
    lo = gl.load(row_start_ptr + expert)
    hi = gl.load(row_start_ptr + expert + 1)
    m_tiles = (hi - lo + BM - 1) // BM
    return expert, first + (local % m_tiles) * BM, (local // m_tiles) * TN, hi


@gluon.jit
def _tile_rows(t, row_start_ptr, n_tiles, E, BM: gl.constexpr, TN: gl.constexpr, in_tile, max_rows):
    """Tile t for a consumer: its expert, first column and end row, the rows at this
    warpgroup's offsets in_tile, and those rows clamped for the scale loads."""
    e, m0, n0, row_end = _tile_of(t, row_start_ptr, n_tiles, E, BM, TN)
    rows = m0 + in_tile
    return e, n0, row_end, rows, gl.minimum(rows, max_rows - 1)


@gluon.jit
def _barrier_ring(STAGES: gl.constexpr, CONSUMERS: gl.constexpr):
    """The ring's mbarriers: full[s] completes when stage s's TMA bytes have landed (the
    loader's one arrival with their count), empty[s] when every consumer warpgroup has
    released the stage."""
    full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES):
        mbarrier.init(full.index(i), count=1)
        mbarrier.init(empty.index(i), count=CONSUMERS)
    return full, empty


@gluon.jit
def _claim_stage(full, empty, it, nbytes):
    """The loader's turn at ring stage it % STAGES: wait until every consumer has released it
    (a fresh barrier counts as having completed the phase before its first, so the first pass
    over the ring does not wait), then announce the bytes its TMA loads will bring."""
    STAGES: gl.constexpr = full.shape[0]
    s = it % STAGES
    mbarrier.wait(empty.index(s), ((it // STAGES) & 1) ^ 1)
    mbarrier.expect(full.index(s), nbytes)
    return s


@gluon.jit
def _total_tiles(row_start_ptr, n_tiles, E, BM: gl.constexpr):
    total = 0
    for e in range(E):
        total += (gl.load(row_start_ptr + e + 1) - gl.load(row_start_ptr + e) + BM - 1) // BM * n_tiles
    return total


@triton.jit
def permute_kernel(hidden_ptr, hidden_scale_ptr, counts_ptr, pair_token_ptr, pair_weight_ptr,
                   rows_ptr, rows_scale_ptr, row_weight_ptr, row_start_ptr, num_tokens, max_rows,
                   H: tl.constexpr, LOCAL: tl.constexpr, ROWS: tl.constexpr, BH: tl.constexpr):
    """Row r (expert order: row_start[e] + slot) = the hidden row of its pair's token, with
    its scales [H / 128, max_rows] and its routing weight. Program 0 writes row_start [E + 1]."""
    experts = tl.arange(0, LOCAL)
    count = tl.load(counts_ptr + experts)
    ends = tl.cumsum(count, 0)
    if tl.program_id(0) == 0:
        tl.store(row_start_ptr + 1 + experts, ends)
        tl.store(row_start_ptr, 0)
    # The grid covers every possible row (T x 8); only the first sum(counts) are live, so the
    # programs past them (most, at large T) skip the row loop.
    if tl.program_id(0) * ROWS < tl.sum(count):
        r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        e = tl.sum((ends[None, :] <= r[:, None]).to(tl.int32), axis=1)
        live = (r < tl.sum(count)) & (r < max_rows)
        start = tl.sum(tl.where(experts[None, :] == e[:, None], (ends - count)[None, :], 0), axis=1)
        pair = tl.minimum(e, LOCAL - 1) * num_tokens + (r - start)
        token = tl.load(pair_token_ptr + pair, mask=live, other=0)
        tl.store(row_weight_ptr + r, tl.load(pair_weight_ptr + pair, mask=live, other=0.0), mask=live)
        kq = tl.arange(0, 64)  # H / 128 = 56 scale blocks
        scale = tl.load(hidden_scale_ptr + kq[None, :] * num_tokens + token[:, None],
                        mask=live[:, None] & (kq < H // 128)[None, :], other=0.0)
        tl.store(rows_scale_ptr + kq[None, :] * max_rows + r[:, None], scale,
                 mask=live[:, None] & (kq < H // 128)[None, :])
        for c in range(0, H, BH):
            cols = c + tl.arange(0, BH)
            row = tl.load(hidden_ptr + token.to(tl.int64)[:, None] * H + cols[None, :], mask=live[:, None])
            tl.store(rows_ptr + r.to(tl.int64)[:, None] * H + cols[None, :], row, mask=live[:, None])


@gluon.jit
def _moe1_loader(a_desc, w_desc, a_bufs, w_bufs, full, empty, row_start_ptr, I, K, E):
    STAGES: gl.constexpr = full.shape[0]
    PARTS: gl.constexpr = a_bufs.shape[0] // STAGES
    BM: gl.constexpr = 64 * PARTS
    n_tiles = I // 64
    it = 0
    for t in range(gl.program_id(0), _total_tiles(row_start_ptr, n_tiles, E, BM), gl.num_programs(0)):
        e, m0, n0, row_end = _tile_of(t, row_start_ptr, n_tiles, E, BM, 64)
        for kb in range(K // BK):
            s = _claim_stage(full, empty, it, PARTS * a_desc.block_type.nbytes + 2 * w_desc.block_type.nbytes)
            for part in gl.static_range(PARTS):
                tma.async_copy_global_to_shared(a_desc, [m0 + 64 * part, kb * BK], full.index(s),
                                                a_bufs.index(s * PARTS + part))
            # The tile's 64 up rows and its 64 gate rows (the second half of w's rows).
            tma.async_copy_global_to_shared(w_desc, [e * 2 * I + n0, kb * BK], full.index(s), w_bufs.index(2 * s))
            tma.async_copy_global_to_shared(w_desc, [e * 2 * I + I + n0, kb * BK], full.index(s),
                                            w_bufs.index(2 * s + 1))
            it += 1


@gluon.jit
def _moe1_consumer(a_bufs, w_bufs, full, empty, sa_ptr, ws_ptr, row_start_ptr, inter_ptr, inter_scale_ptr,
                   max_rows, I, K, E, WHICH: gl.constexpr):
    """silu(x w_gate^T) * (x w_up^T) for rows [64 WHICH, 64 WHICH + 64) of every tile of 64
    intermediate columns, written as the pair's two e4m3 planes at one scale per row."""
    STAGES: gl.constexpr = full.shape[0]
    PARTS: gl.constexpr = a_bufs.shape[0] // STAGES
    BM: gl.constexpr = 64 * PARTS
    layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, 64, 32])
    n_tiles = I // 64
    k_blocks = K // BK
    in_tile = WHICH * 64 + gl.arange(0, 64, layout=gl.SliceLayout(1, layout))
    cols = gl.arange(0, 64, layout=gl.SliceLayout(0, layout))
    up_block = gl.zeros((64, 64), dtype=gl.float32, layout=layout)
    gate_block = gl.zeros((64, 64), dtype=gl.float32, layout=layout)
    it = 0
    for t in range(gl.program_id(0), _total_tiles(row_start_ptr, n_tiles, E, BM), gl.num_programs(0)):
        e, n0, row_end, rows, scale_rows = _tile_rows(t, row_start_ptr, n_tiles, E, BM, 64, in_tile, max_rows)
        ws_up = ws_ptr + (e * (2 * I // 128) + n0 // 128) * k_blocks
        ws_gate = ws_ptr + (e * (2 * I // 128) + (I + n0) // 128) * k_blocks
        up = gl.zeros((64, 64), dtype=gl.float32, layout=layout)
        gate = gl.zeros((64, 64), dtype=gl.float32, layout=layout)
        for kb in range(k_blocks):
            s = it % STAGES
            sa = gl.load(sa_ptr + kb * max_rows + scale_rows)
            s_up = sa * gl.load(ws_up + kb)
            s_gate = sa * gl.load(ws_gate + kb)
            mbarrier.wait(full.index(s), (it // STAGES) & 1)
            a = a_bufs.index(s * PARTS + WHICH)
            up_block = warpgroup_mma(a, w_bufs.index(2 * s).permute((1, 0)), up_block, use_acc=False, is_async=True)
            gate_block = warpgroup_mma(a, w_bufs.index(2 * s + 1).permute((1, 0)), gate_block, use_acc=False,
                                       is_async=True)
            up_block, gate_block = warpgroup_mma_wait(num_outstanding=0, deps=(up_block, gate_block))
            mbarrier.arrive(empty.index(s))
            up += up_block * s_up[:, None]
            gate += gate_block * s_gate[:, None]
            it += 1
        v = gate / (1.0 + gl.exp(-gate)) * up
        scale = gl.maximum(gl.max(gl.abs(v), axis=1), 1e-30) / 448.0
        x = v / scale[:, None]
        high = x.to(gl.float8e4nv)
        low = (x - high.to(gl.float32)).to(gl.float8e4nv)
        live = rows < row_end
        out = inter_ptr + rows.to(gl.int64)[:, None] * (2 * I) + 2 * n0 + cols[None, :]
        gl.store(out, high, mask=live[:, None])
        gl.store(out + 64, low, mask=live[:, None])
        gl.store(inter_scale_ptr + (n0 // 64) * max_rows + rows, scale, mask=live)


# One wrapper per consumer: a worker partition's arguments must be tensors (Gluon 3.6), so each
# wrapper binds its warpgroup's row slice WHICH, a constexpr that picks buffers and rows.
@gluon.jit
def _moe1_c0(a_bufs, w_bufs, full, empty, sa_ptr, ws_ptr, row_start_ptr, inter_ptr, inter_scale_ptr, max_rows, I, K, E):
    _moe1_consumer(a_bufs, w_bufs, full, empty, sa_ptr, ws_ptr, row_start_ptr, inter_ptr, inter_scale_ptr,
                   max_rows, I, K, E, 0)


@gluon.jit
def _moe1_c1(a_bufs, w_bufs, full, empty, sa_ptr, ws_ptr, row_start_ptr, inter_ptr, inter_scale_ptr, max_rows, I, K, E):
    _moe1_consumer(a_bufs, w_bufs, full, empty, sa_ptr, ws_ptr, row_start_ptr, inter_ptr, inter_scale_ptr,
                   max_rows, I, K, E, 1)


@gluon.jit
def _moe1_c2(a_bufs, w_bufs, full, empty, sa_ptr, ws_ptr, row_start_ptr, inter_ptr, inter_scale_ptr, max_rows, I, K, E):
    _moe1_consumer(a_bufs, w_bufs, full, empty, sa_ptr, ws_ptr, row_start_ptr, inter_ptr, inter_scale_ptr,
                   max_rows, I, K, E, 2)


@gluon.jit
def moe_gemm1_kernel(a_desc, w_desc, sa_ptr, ws_ptr, row_start_ptr, inter_ptr, inter_scale_ptr, max_rows, I, K, E,
                     CONSUMERS: gl.constexpr, STAGES: gl.constexpr):
    """CONSUMERS warpgroups (BM 64 CONSUMERS) x 64 intermediate columns (128 weight rows) per
    tile."""
    a_bufs = gl.allocate_shared_memory(a_desc.dtype, [STAGES * CONSUMERS, 64, BK], a_desc.layout)
    w_bufs = gl.allocate_shared_memory(w_desc.dtype, [STAGES * 2, 64, BK], w_desc.layout)
    full, empty = _barrier_ring(STAGES, CONSUMERS)
    ops = (a_bufs, w_bufs, full, empty, sa_ptr, ws_ptr, row_start_ptr, inter_ptr, inter_scale_ptr, max_rows, I, K, E)
    loads = (a_desc, w_desc, a_bufs, w_bufs, full, empty, row_start_ptr, I, K, E)
    if CONSUMERS == 2:
        gl.warp_specialize([(_moe1_c0, ops), (_moe1_c1, ops), (_moe1_loader, loads)], [4, 1], [232, 24])
    else:
        gl.static_assert(CONSUMERS == 3, "2 or 3 consumer warpgroups")
        gl.warp_specialize([(_moe1_c0, ops), (_moe1_c1, ops), (_moe1_c2, ops), (_moe1_loader, loads)], [4, 4, 1],
                           [152, 152, 24])


@gluon.jit
def _moe2_loader(hi_desc, w_desc, hi_bufs, lo_bufs, w_bufs, full, empty, row_start_ptr, H, I, E):
    STAGES: gl.constexpr = full.shape[0]
    PARTS: gl.constexpr = hi_bufs.shape[0] // STAGES
    BM: gl.constexpr = 64 * PARTS
    n_tiles = H // BN
    it = 0
    for t in range(gl.program_id(0), _total_tiles(row_start_ptr, n_tiles, E, BM), gl.num_programs(0)):
        e, m0, n0, row_end = _tile_of(t, row_start_ptr, n_tiles, E, BM)
        for kb in range(I // 64):
            s = _claim_stage(full, empty, it, 2 * PARTS * hi_desc.block_type.nbytes + w_desc.block_type.nbytes)
            for part in gl.static_range(PARTS):
                tma.async_copy_global_to_shared(hi_desc, [m0 + 64 * part, kb * 128], full.index(s),
                                                hi_bufs.index(s * PARTS + part))
                tma.async_copy_global_to_shared(hi_desc, [m0 + 64 * part, kb * 128 + 64], full.index(s),
                                                lo_bufs.index(s * PARTS + part))
            tma.async_copy_global_to_shared(w_desc, [e * H + n0, kb * 64], full.index(s), w_bufs.index(s))
            it += 1


@gluon.jit
def _moe2_consumer(hi_bufs, lo_bufs, w_bufs, full, empty, inter_scale_ptr, ws_ptr, row_weight_ptr, row_start_ptr,
                   y_ptr, max_rows, H, I, E, WHICH: gl.constexpr):
    """y rows [64 WHICH, 64 WHICH + 64) of every tile = routing weight x (both planes x w^T)."""
    STAGES: gl.constexpr = full.shape[0]
    PARTS: gl.constexpr = hi_bufs.shape[0] // STAGES
    BM: gl.constexpr = 64 * PARTS
    layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BN, 32])
    n_tiles = H // BN
    k_blocks = I // 64
    in_tile = WHICH * 64 + gl.arange(0, 64, layout=gl.SliceLayout(1, layout))
    cols = gl.arange(0, BN, layout=gl.SliceLayout(0, layout))
    block = gl.zeros((64, BN), dtype=gl.float32, layout=layout)
    it = 0
    for t in range(gl.program_id(0), _total_tiles(row_start_ptr, n_tiles, E, BM), gl.num_programs(0)):
        e, n0, row_end, rows, scale_rows = _tile_rows(t, row_start_ptr, n_tiles, E, BM, BN, in_tile, max_rows)
        ws_row = ws_ptr + (e * (H // 128) + n0 // 128) * (I // 128)
        acc = gl.zeros((64, BN), dtype=gl.float32, layout=layout)
        for kb in range(k_blocks):
            s = it % STAGES
            scale = gl.load(inter_scale_ptr + kb * max_rows + scale_rows) * gl.load(ws_row + kb // 2)
            mbarrier.wait(full.index(s), (it // STAGES) & 1)
            w = w_bufs.index(s).permute((1, 0))
            block = warpgroup_mma(hi_bufs.index(s * PARTS + WHICH), w, block, use_acc=False, is_async=True)
            block = warpgroup_mma(lo_bufs.index(s * PARTS + WHICH), w, block, is_async=True)
            block = warpgroup_mma_wait(num_outstanding=0, deps=(block, ))
            mbarrier.arrive(empty.index(s))
            acc += block * scale[:, None]
            it += 1
        live = rows < row_end
        weight = gl.load(row_weight_ptr + scale_rows)
        out = y_ptr + rows.to(gl.int64)[:, None] * H + n0 + cols[None, :]
        gl.store(out, (acc * weight[:, None]).to(gl.bfloat16), mask=live[:, None])


# One wrapper per consumer: a worker partition's arguments must be tensors (Gluon 3.6), so each
# wrapper binds its warpgroup's row slice WHICH, a constexpr that picks buffers and rows.
@gluon.jit
def _moe2_c0(hi_bufs, lo_bufs, w_bufs, full, empty, inter_scale_ptr, ws_ptr, row_weight_ptr, row_start_ptr, y_ptr,
             max_rows, H, I, E):
    _moe2_consumer(hi_bufs, lo_bufs, w_bufs, full, empty, inter_scale_ptr, ws_ptr, row_weight_ptr, row_start_ptr,
                   y_ptr, max_rows, H, I, E, 0)


@gluon.jit
def _moe2_c1(hi_bufs, lo_bufs, w_bufs, full, empty, inter_scale_ptr, ws_ptr, row_weight_ptr, row_start_ptr, y_ptr,
             max_rows, H, I, E):
    _moe2_consumer(hi_bufs, lo_bufs, w_bufs, full, empty, inter_scale_ptr, ws_ptr, row_weight_ptr, row_start_ptr,
                   y_ptr, max_rows, H, I, E, 1)


@gluon.jit
def _moe2_c2(hi_bufs, lo_bufs, w_bufs, full, empty, inter_scale_ptr, ws_ptr, row_weight_ptr, row_start_ptr, y_ptr,
             max_rows, H, I, E):
    _moe2_consumer(hi_bufs, lo_bufs, w_bufs, full, empty, inter_scale_ptr, ws_ptr, row_weight_ptr, row_start_ptr,
                   y_ptr, max_rows, H, I, E, 2)


@gluon.jit
def moe_gemm2_kernel(hi_desc, w_desc, inter_scale_ptr, ws_ptr, row_weight_ptr, row_start_ptr, y_ptr, max_rows, H, I,
                     E, CONSUMERS: gl.constexpr, STAGES: gl.constexpr):
    """CONSUMERS warpgroups (BM 64 CONSUMERS) x 128 output columns per tile, 64 of K per block."""
    hi_bufs = gl.allocate_shared_memory(hi_desc.dtype, [STAGES * CONSUMERS, 64, 64], hi_desc.layout)
    lo_bufs = gl.allocate_shared_memory(hi_desc.dtype, [STAGES * CONSUMERS, 64, 64], hi_desc.layout)
    w_bufs = gl.allocate_shared_memory(w_desc.dtype, [STAGES, BN, 64], w_desc.layout)
    full, empty = _barrier_ring(STAGES, CONSUMERS)
    ops = (hi_bufs, lo_bufs, w_bufs, full, empty, inter_scale_ptr, ws_ptr, row_weight_ptr, row_start_ptr, y_ptr,
           max_rows, H, I, E)
    loads = (hi_desc, w_desc, hi_bufs, lo_bufs, w_bufs, full, empty, row_start_ptr, H, I, E)
    if CONSUMERS == 2:
        gl.warp_specialize([(_moe2_c0, ops), (_moe2_c1, ops), (_moe2_loader, loads)], [4, 1], [232, 24])
    else:
        gl.static_assert(CONSUMERS == 3, "2 or 3 consumer warpgroups")
        gl.warp_specialize([(_moe2_c0, ops), (_moe2_c1, ops), (_moe2_c2, ops), (_moe2_loader, loads)], [4, 4, 1],
                           [152, 152, 24])


def moe_descriptors(rows, w1, inter, w2):
    """TMA descriptors: permuted rows [rows, H] and w1 [E 2I, H] in 64 x 128 boxes; the pair
    planes [rows, 2I] and w2 [E H, I] in 64-column boxes (64 B swizzle)."""
    box = lambda shape: gl.NVMMASharedLayout.get_default_for(shape, gl.float8e4nv)
    return (TensorDescriptor.from_tensor(rows, [64, 128], box([64, 128])),
            TensorDescriptor.from_tensor(w1.view(-1, w1.shape[-1]), [64, 128], box([64, 128])),
            TensorDescriptor.from_tensor(inter, [64, 64], box([64, 64])),
            TensorDescriptor.from_tensor(w2.view(-1, w2.shape[-1]), [128, 64], box([128, 64])))


def gemms(hidden_states, hidden_states_scale, counts, pair_token, pair_weight, gemm1_weights, gemm1_weights_scale,
          gemm2_weights, gemm2_weights_scale, y, sms, stages=None, consumers=3):
    """Enqueue the permute and both GEMMs (no host sync): y [max_rows, H] bf16 gets each
    pair's row, routing weight applied, at row row_start[e] + slot as the combine reads it.
    counts, pair_token and pair_weight are the routing kernel's."""
    if consumers not in (2, 3):
        raise ValueError(f"moe: gluon_consumers {consumers} must be 2 or 3")
    tokens, hidden = hidden_states.shape
    local, inter = gemm1_weights.shape[0], gemm2_weights.shape[2]
    dev = hidden_states.device
    max_rows = y.shape[0]
    rows = torch.empty(max_rows, hidden, dtype=torch.float8_e4m3fn, device=dev)
    rows_scale = torch.empty(hidden // 128, max_rows, dtype=torch.float32, device=dev)
    row_weight = torch.empty(max_rows, dtype=torch.float32, device=dev)
    row_start = torch.empty(local + 1, dtype=torch.int32, device=dev)
    permute_kernel[(triton.cdiv(max_rows, 16),)](hidden_states, hidden_states_scale, counts, pair_token, pair_weight,
                                                 rows, rows_scale, row_weight, row_start, tokens, max_rows,
                                                 H=hidden, LOCAL=local, ROWS=16, BH=1024, num_warps=4)
    pair = torch.empty(max_rows, 2 * inter, dtype=torch.float8_e4m3fn, device=dev)
    pair_scale = torch.empty(inter // 64, max_rows, dtype=torch.float32, device=dev)
    rows_desc, w1_desc, pair_desc, w2_desc = moe_descriptors(rows, gemm1_weights, pair, gemm2_weights)
    # Ring stages within 227 KB of shared memory: GEMM1's are 16 KB of weights + 8 KB of rows
    # per consumer, GEMM2's 8 KB + 8 KB. H200 at T = 11948 / 14107, 3 consumers: (5, 6), (5, 7)
    # and (4, 5) within noise of each other (docs/perf-notes.md, v11).
    stages = stages or ((6, 8) if consumers == 2 else (5, 6))
    moe_gemm1_kernel[(sms,)](rows_desc, w1_desc, rows_scale, gemm1_weights_scale, row_start, pair, pair_scale,
                             max_rows, inter, hidden, local, CONSUMERS=consumers, STAGES=stages[0], num_warps=4)
    moe_gemm2_kernel[(sms,)](pair_desc, w2_desc, pair_scale, gemm2_weights_scale, row_weight, row_start, y,
                             max_rows, hidden, inter, local, CONSUMERS=consumers, STAGES=stages[1], num_warps=4)

