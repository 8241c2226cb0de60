"""GDN prefill over packed variable-length sequences: the chunked delta rule, one launch (up to
1024 tokens) or one launch per role (see launch_config).

Shapes: q, k [T, 4, 128] bf16; v [T, 8, 128] bf16; a, b [T, 8] bf16; A_log, dt_bias [8] fp32;
cu_seqlens [N + 1] int64; state / new_state [N, 8, 128 (V), 128 (K)] fp32, k-last; output
[T, 8, 128] bf16. v head h reads q/k head h // 2.

Math, per sequence and head, for one chunk of 64 tokens with state S [V, K] at its start,
log gates G (cumulative from the chunk start, G_last at its end) and beta:
    A_ij = beta_i exp(G_i - G_j) k_i.k_j  (j < i),     T = (I + A)^-1
    W = T (beta exp(G) k),   U = T (beta v)              <- independent of S: "prepare"
    u = U - W S^T
    o_i = scale (exp(G_i) q_i S^T + sum_{j<=i} exp(G_i - G_j) (q_i.k_j) u_j)
    S  <- exp(G_last) S + u^T (exp(G_last - G) k)          <- the serial part: "walk"
(The PyTorch baseline beside this folder spells out the same algebra.)

One grid, three roles, told apart by program id (ids in this order):
  * prepare, one (chunk, head) each: build A in 16-row blocks, invert I + A blockwise (16x16
    diagonal inverses by repeated squaring, then two block-merge levels), assemble T in the
    workspace, compute W = T (beta exp(G) k) and U = T (beta v); release the chunk.
  * walk, one (sequence, head, BV state columns) each: the serial part only. Hold the state
    block in registers; per chunk store it (the chunk's start state), turn U into
    u = U - W S^T in place, update the state, and count the chunk as walked.
  * output, one (chunk, head, BVO columns) each: once all walkers passed the chunk,
    o = exp(G) q S^T + (q k^T * decay) u from the stored start state and u.
So a long sequence's chunks are prepared and output in parallel and only two products per
chunk are serial. Each role waits only on roles with lower program ids, and blocks are
dispatched in id order, so whatever a program waits for is running or done. The last
output program zeroes the flags, so the next call (or CUDA-graph replay) finds them clean
without a memset launch. Nothing reads cu_seqlens on the host: chunk counts are bounded by
T // 64 + N, and each program finds its chunk from cu_seqlens itself.
"""
import torch
import triton
import triton.language as tl

HEAD_K = 128
HEAD_V = 128
CHUNK = 64
SUB = 16  # rows per block of the blockwise inverse


# ----------------------------------------------------------------------------- helpers

@triton.jit
def _gates(a_ptr, b_ptr, tok, valid, head, decay_rate, dt_bias, H: tl.constexpr):
    """log g and beta of tokens `tok` of one head; 0 and 0 (no decay, no update) off the end."""
    x = tl.load(a_ptr + tok * H + head, mask=valid, other=0.0).to(tl.float32) + dt_bias
    softplus = tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(x)))  # torch's threshold
    log_g = tl.where(valid, -decay_rate * softplus, 0.0)
    b = tl.load(b_ptr + tok * H + head, mask=valid, other=0.0).to(tl.float32)
    return log_g, tl.where(valid, tl.sigmoid(b), 0.0)


@triton.jit
def _sequence_table(cu_ptr, num_seqs, BLOCK_N: tl.constexpr, BT: tl.constexpr):
    """Per sequence: start, end, chunk count, and chunks up to and including it."""
    ids = tl.arange(0, BLOCK_N)
    real = ids < num_seqs
    starts = tl.load(cu_ptr + ids, mask=real, other=0)
    ends = tl.load(cu_ptr + ids + 1, mask=real, other=0)
    chunks = tl.where(real, (ends - starts + BT - 1) // BT, 0).to(tl.int32)
    return ids, starts, ends, chunks, tl.cumsum(chunks, 0)


@triton.jit
def _pick(ids, which, values):
    return tl.sum(tl.where(ids == which, values, 0), 0)


@triton.jit
def _mm(x, y, PRECISION: tl.constexpr):
    # The blockwise inverse chains products of possibly large entries: fp32-accurate
    # ("ieee" on CUDA cores, or "tf32x3" on tensor cores).
    return tl.dot(x, y, input_precision=PRECISION)


@triton.jit
def _unit_lower_inverse(a, BC: tl.constexpr, PRECISION: tl.constexpr):
    """(I + a)^-1 for strictly lower-triangular a [BC, BC] (BC = 16): with p = -a nilpotent,
    the inverse is sum_k p^k = (I + p)(I + p^2)(I + p^4)(I + p^8)."""
    r = tl.arange(0, BC)
    p = -a
    x = (r[:, None] == r[None, :]).to(tl.float32) + p
    p = _mm(p, p, PRECISION)
    x = x + _mm(x, p, PRECISION)
    p = _mm(p, p, PRECISION)
    x = x + _mm(x, p, PRECISION)
    p = _mm(p, p, PRECISION)
    x = x + _mm(x, p, PRECISION)
    return x


@triton.jit
def _locate_chunk(chunk, cu_ptr, num_seqs, BLOCK_N: tl.constexpr, BT: tl.constexpr):
    """Sequence, first token and end of global chunk `chunk` (seq == num_seqs: past the end)."""
    ids, starts, ends, chunks, chunks_through = _sequence_table(cu_ptr, num_seqs, BLOCK_N, BT)
    seq = tl.sum((chunks_through <= chunk).to(tl.int32), 0)
    first = _pick(ids, seq, chunks_through - chunks)
    return seq, _pick(ids, seq, starts) + (chunk - first) * BT, _pick(ids, seq, ends)


@triton.jit
def _key_rows(k_ptr, a_ptr, b_ptr, tok0, eos, part: tl.constexpr, head, qk_head, decay_rate,
              dt_bias, g_before, H: tl.constexpr, HQK: tl.constexpr, K: tl.constexpr,
              BC: tl.constexpr):
    """Rows [part*BC, (part+1)*BC) of a chunk: k, cumulative log gate, beta."""
    tok = tok0 + part * BC + tl.arange(0, BC)
    valid = tok < eos
    log_g, beta = _gates(a_ptr, b_ptr, tok, valid, head, decay_rate, dt_bias, H)
    k = tl.load(k_ptr + (tok[:, None] * HQK + qk_head) * K + tl.arange(0, K)[None, :],
                mask=valid[:, None], other=0.0)
    return k, tl.cumsum(log_g, 0) + g_before, beta, g_before + tl.sum(log_g, 0)


@triton.jit
def _a_block(k_i, k_j, g_i, g_j, beta_i, DIAGONAL: tl.constexpr, BC: tl.constexpr):
    """Block (i, j) of A: beta_i exp(G_i - G_j) k_i.k_j, strictly lower on the diagonal."""
    kk = tl.dot(k_i, tl.trans(k_j))  # bf16 products are exact, accumulated in fp32
    diff = g_i[:, None] - g_j[None, :]
    if DIAGONAL:
        r = tl.arange(0, BC)
        diff = tl.where(r[:, None] > r[None, :], diff, float("-inf"))
    return kk * tl.exp(diff) * beta_i[:, None]


@triton.jit
def _store_block(ptr, x, i: tl.constexpr, j: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    r = tl.arange(0, BC)
    tl.store(ptr + (i * BC + r)[:, None] * BT + (j * BC + r)[None, :], x)


@triton.jit
def _tile(ptr, tok, valid, head, HEADS: tl.constexpr, D: tl.constexpr):
    """Rows `tok` of one head of a [T, HEADS, D] tensor, zero where not valid."""
    return tl.load(ptr + (tok[:, None] * HEADS + head) * D + tl.arange(0, D)[None, :],
                   mask=valid[:, None], other=0.0)


@triton.jit
def _split_bf16(x):
    """x = hi + lo with both in bf16: two bf16 products then carry ~16 bits of x, exactly
    multiplied against bf16 q or k, where one tf32 product would keep 10."""
    hi = x.to(tl.bfloat16)
    return hi, (x - hi.to(tl.float32)).to(tl.bfloat16)


# ----------------------------------------------------------------------------- prepare

@triton.jit
def _prepare_chunk(work, k_ptr, v_ptr, A_log_ptr, a_ptr, dt_bias_ptr, b_ptr, cu_ptr,
                   w_ptr, u_ptr, kt_ptr, h_ptr, ready_ptr, num_seqs,
                   SIGNAL: tl.constexpr, TRIL: tl.constexpr, H: tl.constexpr, HQK: tl.constexpr,
                   K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
                   BLOCK_N: tl.constexpr):
    chunk = work // H
    head = work % H
    seq, tok0, eos = _locate_chunk(chunk, cu_ptr, num_seqs, BLOCK_N, BT)
    if seq < num_seqs:  # else: past the last chunk (the grid is an upper bound)
        qk_head = head // (H // HQK)
        decay_rate = tl.exp(tl.load(A_log_ptr + head))
        dt_bias = tl.load(dt_bias_ptr + head)

        g = 0.0
        k0, g0, b0, g = _key_rows(k_ptr, a_ptr, b_ptr, tok0, eos, 0, head, qk_head, decay_rate,
                                  dt_bias, g, H, HQK, K, BC)
        k1, g1, b1, g = _key_rows(k_ptr, a_ptr, b_ptr, tok0, eos, 1, head, qk_head, decay_rate,
                                  dt_bias, g, H, HQK, K, BC)
        k2, g2, b2, g = _key_rows(k_ptr, a_ptr, b_ptr, tok0, eos, 2, head, qk_head, decay_rate,
                                  dt_bias, g, H, HQK, K, BC)
        k3, g3, b3, g = _key_rows(k_ptr, a_ptr, b_ptr, tok0, eos, 3, head, qk_head, decay_rate,
                                  dt_bias, g, H, HQK, K, BC)

        # T = (I + A)^-1 block by block: D_i inverts diagonal block i; then the inverse of
        # [[L0, 0], [C, L1]] is [[L0^-1, 0], [-L1^-1 C L0^-1, L1^-1]], at 32 and at 64 rows.
        d0 = _unit_lower_inverse(_a_block(k0, k0, g0, g0, b0, True, BC), BC, TRIL)
        d1 = _unit_lower_inverse(_a_block(k1, k1, g1, g1, b1, True, BC), BC, TRIL)
        d2 = _unit_lower_inverse(_a_block(k2, k2, g2, g2, b2, True, BC), BC, TRIL)
        d3 = _unit_lower_inverse(_a_block(k3, k3, g3, g3, b3, True, BC), BC, TRIL)
        a10 = _a_block(k1, k0, g1, g0, b1, False, BC)
        a20 = _a_block(k2, k0, g2, g0, b2, False, BC)
        a21 = _a_block(k2, k1, g2, g1, b2, False, BC)
        a30 = _a_block(k3, k0, g3, g0, b3, False, BC)
        a31 = _a_block(k3, k1, g3, g1, b3, False, BC)
        a32 = _a_block(k3, k2, g3, g2, b3, False, BC)
        t10 = -_mm(_mm(d1, a10, TRIL), d0, TRIL)
        t32 = -_mm(_mm(d3, a32, TRIL), d2, TRIL)
        z20 = _mm(a20, d0, TRIL) + _mm(a21, t10, TRIL)
        z21 = _mm(a21, d1, TRIL)
        z30 = _mm(a30, d0, TRIL) + _mm(a31, t10, TRIL)
        z31 = _mm(a31, d1, TRIL)

        # Assemble T [BT, BT] in the chunk's start-state slot (the walker writes it only after
        # this chunk is released), then W and U are 64-row products instead of 16-row ones.
        slot = (chunk * H + head).to(tl.int64)
        t_ptr = h_ptr + slot * K * V
        _store_block(t_ptr, d0, 0, 0, BT, BC)
        _store_block(t_ptr, t10, 1, 0, BT, BC)
        _store_block(t_ptr, d1, 1, 1, BT, BC)
        _store_block(t_ptr, -_mm(d2, z20, TRIL), 2, 0, BT, BC)
        _store_block(t_ptr, -_mm(d2, z21, TRIL), 2, 1, BT, BC)
        _store_block(t_ptr, d2, 2, 2, BT, BC)
        _store_block(t_ptr, -(_mm(t32, z20, TRIL) + _mm(d3, z30, TRIL)), 3, 0, BT, BC)
        _store_block(t_ptr, -(_mm(t32, z21, TRIL) + _mm(d3, z31, TRIL)), 3, 1, BT, BC)
        _store_block(t_ptr, t32, 3, 2, BT, BC)
        _store_block(t_ptr, d3, 3, 3, BT, BC)
        tl.debug_barrier()  # the whole of T is written before any thread reads it back

        r = tl.arange(0, BT)
        t = tl.load(t_ptr + r[:, None] * BT + r[None, :], mask=r[None, :] // BC <= r[:, None] // BC,
                    other=0.0)
        tok = tok0 + r
        valid = tok < eos
        log_g, beta = _gates(a_ptr, b_ptr, tok, valid, head, decay_rate, dt_bias, H)
        g_cum = tl.cumsum(log_g, 0)
        k_scale = beta * tl.exp(g_cum)
        tail_decay = tl.exp(tl.sum(log_g, 0) - g_cum)  # exp(G_last - G_j)
        # In two halves of 64 columns, to stay within the register file.
        HALF: tl.constexpr = K // 2
        for half in tl.static_range(2):
            c = half * HALF + tl.arange(0, HALF)
            k = tl.load(k_ptr + (tok[:, None] * HQK + qk_head) * K + c[None, :],
                        mask=valid[:, None], other=0.0).to(tl.float32)
            tl.store(w_ptr + slot * BT * K + r[:, None] * K + c[None, :],
                     tl.dot(t, k * k_scale[:, None]))  # tf32
            # k~^T = (exp(G_last - G) k)^T, the walker's state-update operand, ready to use.
            tl.store(kt_ptr + slot * K * BT + c[:, None] * BT + r[None, :],
                     tl.trans(k * tail_decay[:, None]))
            v = tl.load(v_ptr + (tok[:, None] * H + head) * V + c[None, :],
                        mask=valid[:, None], other=0.0).to(tl.float32)
            tl.store(u_ptr + slot * BT * V + r[:, None] * V + c[None, :], tl.dot(t, v * beta[:, None]))
        if SIGNAL:
            tl.debug_barrier()  # every thread's rows are written before the flag goes up
            tl.atomic_xchg(ready_ptr + slot, 1, sem="release")


# ----------------------------------------------------------------------------- walk

@triton.jit
def _walk_sequence(work, state_ptr, A_log_ptr, a_ptr, dt_bias_ptr, b_ptr, cu_ptr,
                   w_ptr, u_ptr, kt_ptr, h_ptr, ready_ptr, walked_ptr, new_state_ptr, num_seqs,
                   HAS_STATE: tl.constexpr, WAIT: tl.constexpr, SIGNAL: tl.constexpr,
                   STAGES: tl.constexpr, H: tl.constexpr, HQK: tl.constexpr, K: tl.constexpr,
                   V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr, BLOCK_N: tl.constexpr):
    NV: tl.constexpr = V // BV
    cb = work % NV
    head = (work // NV) % H
    seq = work // (NV * H)
    ids, starts, ends, chunks, chunks_through = _sequence_table(cu_ptr, num_seqs, BLOCK_N, BT)
    bos = _pick(ids, seq, starts)
    eos = _pick(ids, seq, ends)
    first = _pick(ids, seq, chunks_through - chunks)
    n_chunks = _pick(ids, seq, chunks)
    decay_rate = tl.exp(tl.load(A_log_ptr + head))
    dt_bias = tl.load(dt_bias_ptr + head)

    offs_t = tl.arange(0, BT)
    offs_k = tl.arange(0, K)
    cols = cb * BV + tl.arange(0, BV)
    # The state block held transposed, h [K, BV] = S[cols, :]^T, so that the two serial
    # products, W h and k^T u, have 64 and 128 rows.
    h_offs = (seq * H + head).to(tl.int64) * V * K + cols[None, :] * K + offs_k[:, None]
    if HAS_STATE:
        h = tl.load(state_ptr + h_offs)
    else:
        h = tl.zeros((K, BV), dtype=tl.float32)

    if WAIT:
        # Wait for every chunk of the sequence first, so that the walk loop has no waits
        # inside and its loads can be software-pipelined.
        for c in range(n_chunks):
            while tl.atomic_add(ready_ptr + (first + c) * H + head, 0, sem="acquire") == 0:
                pass

    for c in tl.range(0, n_chunks, num_stages=STAGES):
        slot = ((first + c) * H + head).to(tl.int64)
        tok = bos + c * BT + offs_t
        valid = tok < eos
        log_g, _ = _gates(a_ptr, b_ptr, tok, valid, head, decay_rate, dt_bias, H)
        # The workspace was written by other programs of this launch: read it through L2.
        w = tl.load(w_ptr + slot * BT * K + offs_t[:, None] * K + offs_k[None, :], cache_modifier=".cg")
        u_offs = slot * BT * V + offs_t[:, None] * V + cols[None, :]
        u = tl.load(u_ptr + u_offs, cache_modifier=".cg")
        tl.store(h_ptr + slot * K * V + offs_k[:, None] * V + cols[None, :], h)  # start state
        u = u - tl.dot(w, h)  # tf32; v_new of the chunk's tokens
        tl.store(u_ptr + u_offs, u)  # in place: no other walker reads these columns
        kt = tl.load(kt_ptr + slot * K * BT + offs_k[:, None] * BT + offs_t[None, :],
                     cache_modifier=".cg")
        # tf32. (A bf16 hi/lo split of u against bf16 k, as the output role does with q, came
        # out wrong in one column of each 16-column block on the H200 with Triton 3.6 while
        # exact in the interpreter and at 8 columns; kept off until that is understood.)
        h = h * tl.exp(tl.sum(log_g, 0)) + tl.dot(kt, u)
        if SIGNAL:
            tl.debug_barrier()
            tl.atomic_add(walked_ptr + slot, 1, sem="release")

    tl.store(new_state_ptr + h_offs, h)


# ----------------------------------------------------------------------------- output

@triton.jit
def _output_chunk(work, q_ptr, k_ptr, A_log_ptr, a_ptr, dt_bias_ptr, b_ptr, cu_ptr, u_ptr,
                  h_ptr, walked_ptr, flags_ptr, done_ptr, out_ptr, scale, num_seqs,
                  num_outputs, num_flags,
                  WAIT: tl.constexpr, WALKERS: tl.constexpr, H: tl.constexpr,
                  HQK: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr,
                  BVO: tl.constexpr, BLOCK_N: tl.constexpr):
    NVO: tl.constexpr = V // BVO
    slot = work // NVO
    cols = (work % NVO) * BVO + tl.arange(0, BVO)
    chunk = slot // H
    head = slot % H
    seq, tok0, eos = _locate_chunk(chunk, cu_ptr, num_seqs, BLOCK_N, BT)
    if seq < num_seqs:
        if WAIT:
            while tl.atomic_add(walked_ptr + slot, 0, sem="acquire") < WALKERS:
                pass
        qk_head = head // (H // HQK)
        decay_rate = tl.exp(tl.load(A_log_ptr + head))
        dt_bias = tl.load(dt_bias_ptr + head)
        r = tl.arange(0, BT)
        tok = tok0 + r
        valid = tok < eos
        log_g, _ = _gates(a_ptr, b_ptr, tok, valid, head, decay_rate, dt_bias, H)
        g = tl.cumsum(log_g, 0)
        q = _tile(q_ptr, tok, valid, qk_head, HQK, K)
        k = _tile(k_ptr, tok, valid, qk_head, HQK, K)
        slot64 = slot.to(tl.int64)
        h = tl.load(h_ptr + slot64 * K * V + tl.arange(0, K)[:, None] * V + cols[None, :],
                    cache_modifier=".cg")
        u = tl.load(u_ptr + slot64 * BT * V + r[:, None] * V + cols[None, :], cache_modifier=".cg")
        h_hi, h_lo = _split_bf16(h)
        qk = tl.dot(q, tl.trans(k)) * tl.exp(tl.where(r[:, None] >= r[None, :],
                                                      g[:, None] - g[None, :], float("-inf")))
        o = tl.exp(g)[:, None] * (tl.dot(q, h_hi) + tl.dot(q, h_lo)) + tl.dot(qk, u)
        tl.store(out_ptr + (tok[:, None] * H + head) * V + cols[None, :],
                 (o * scale).to(out_ptr.dtype.element_ty), mask=valid[:, None])
    if WAIT:
        # The last output program out zeroes the flags: every chunk was released, walked
        # and consumed, and no walker waits any more.
        tl.debug_barrier()
        if tl.atomic_add(done_ptr, 1, sem="acq_rel") == num_outputs - 1:
            for start in range(0, num_flags, 1024):
                offs = start + tl.arange(0, 1024)
                tl.store(flags_ptr + offs, 0, mask=offs < num_flags)
            tl.atomic_xchg(done_ptr, 0)


# ----------------------------------------------------------------------------- kernel

PREPARE, WALK, OUTPUT = 1, 2, 4
ALL_ROLES = PREPARE | WALK | OUTPUT


@triton.jit
def gdn_prefill_kernel(q_ptr, k_ptr, v_ptr, state_ptr, A_log_ptr, a_ptr, dt_bias_ptr, b_ptr,
                       cu_ptr, out_ptr, new_state_ptr, w_ptr, u_ptr, kt_ptr, h_ptr, flags_ptr,
                       done_ptr,
                       scale, num_seqs, num_prepare, num_walkers, num_outputs,
                       ROLES: tl.constexpr, HAS_STATE: tl.constexpr, TRIL: tl.constexpr,
                       STAGES: tl.constexpr, H: tl.constexpr, HQK: tl.constexpr,
                       K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
                       BV: tl.constexpr, BVO: tl.constexpr, BLOCK_N: tl.constexpr):
    """ROLES: which roles this launch runs (bits PREPARE=1, WALK=2, OUTPUT=4). All three: the
    one-launch form, where roles wait on flags. One: that role alone (stream order between
    launches replaces the flags)."""
    FUSED: tl.constexpr = ROLES == 7
    pid = tl.program_id(0)
    walk_start = num_prepare if ROLES & 1 else 0
    output_start = walk_start + (num_walkers if ROLES & 2 else 0)
    ready_ptr = flags_ptr
    walked_ptr = flags_ptr + num_prepare  # one flag of each kind per (chunk, head) slot
    if ROLES & 1:
        if pid < walk_start:
            _prepare_chunk(pid, k_ptr, v_ptr, A_log_ptr, a_ptr, dt_bias_ptr, b_ptr, cu_ptr,
                           w_ptr, u_ptr, kt_ptr, h_ptr, ready_ptr, num_seqs, FUSED, TRIL, H, HQK,
                           K, V, BT, BC, BLOCK_N)
    if ROLES & 2:
        if pid >= walk_start and pid < output_start:
            _walk_sequence(pid - walk_start, state_ptr, A_log_ptr, a_ptr, dt_bias_ptr,
                           b_ptr, cu_ptr, w_ptr, u_ptr, kt_ptr, h_ptr, ready_ptr, walked_ptr,
                           new_state_ptr, num_seqs, HAS_STATE, FUSED, FUSED, STAGES, H, HQK, K,
                           V, BT, BV, BLOCK_N)
    if ROLES & 4:
        if pid >= output_start:
            _output_chunk(pid - output_start, q_ptr, k_ptr, A_log_ptr, a_ptr, dt_bias_ptr, b_ptr,
                          cu_ptr, u_ptr, h_ptr, walked_ptr, flags_ptr, done_ptr, out_ptr, scale,
                          num_seqs, num_outputs, 2 * num_prepare, FUSED, V // BV, H, HQK, K, V,
                          BT, BVO, BLOCK_N)


# ----------------------------------------------------------------------------- host

class _Flags:
    """Per-device flags and done counter, zeroed once; the kernel leaves them zeroed."""

    buffers = {}

    @classmethod
    def get(cls, device, num_flags):
        key = (device.type, device.index)
        buf = cls.buffers.get(key)
        if buf is None or buf.numel() < num_flags + 1:
            buf = torch.zeros(max(num_flags + 1, 1 << 16), dtype=torch.int32, device=device)
            cls.buffers[key] = buf
        return buf[1:], buf[:1]


# fused: one launch (else one launch per role); block_v: state columns per walker; block_vo:
# output columns per output program; tril: precision of the blockwise inverse's products;
# stages: walker load pipelining.
DEFAULT_CONFIG = dict(fused=True, block_v=16, block_vo=32, num_warps=4, tril="ieee", stages=2)


def launch_config(total_tokens: int, num_seqs: int) -> dict:
    """Launch parameters by problem size (docs/perf-notes.md has the sweep). One launch wins
    while launch gaps dominate; past ~1000 tokens three launches win, each role compiled
    with its own register budget (the fused kernel gives every role the prepare role's)."""
    cfg = dict(DEFAULT_CONFIG)
    if total_tokens > 1024:
        cfg["fused"] = False
        cfg["block_v"] = 32 if num_seqs >= 4 else 16
    return cfg


def run(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale, output, new_state):
    """The contest entry point (destination-passing): writes output and new_state."""
    launch(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale, output, new_state)


def launch(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale, output, new_state,
           config=None):
    """run() with explicit launch parameters (keys of DEFAULT_CONFIG, or roles=<bits> for one
    role alone) for sweeps; returns the compiled kernels launched (n_regs, n_spills)."""
    total, num_qk_heads, head_k = q.shape
    num_v_heads, head_v = v.shape[1], v.shape[2]
    if (head_k, head_v) != (HEAD_K, HEAD_V):
        raise ValueError(f"gdn prefill: head sizes must be {HEAD_K}, got {head_k} and {head_v}")
    num_seqs = cu_seqlens.numel() - 1
    if num_seqs <= 0:
        return []
    cfg = dict(launch_config(total, num_seqs), **(config or {}))
    scale = float(scale) if scale else head_k ** -0.5
    # Sum over sequences of ceil(len / 64) <= T // 64 + N: a bound known without a sync.
    num_slots = (total // CHUNK + num_seqs) * num_v_heads
    fp32 = dict(device=q.device, dtype=torch.float32)
    w = torch.empty(num_slots, CHUNK, head_k, **fp32)
    u = torch.empty(num_slots, CHUNK, head_v, **fp32)
    kt = torch.empty(num_slots, head_k, CHUNK, **fp32)
    h = torch.empty(num_slots, head_k, head_v, **fp32)  # each chunk's start state
    flags, done = _Flags.get(q.device, 2 * num_slots)
    num_walkers = num_seqs * num_v_heads * (head_v // cfg["block_v"])
    num_outputs = num_slots * (head_v // cfg["block_vo"])
    args = (q, k, v, state if state is not None else new_state, A_log, a, dt_bias, b,
            cu_seqlens, output, new_state, w, u, kt, h, flags, done,
            scale, num_seqs, num_slots, num_walkers, num_outputs)
    meta = dict(HAS_STATE=state is not None, TRIL=cfg["tril"], STAGES=cfg["stages"],
                H=num_v_heads, HQK=num_qk_heads, K=head_k, V=head_v, BT=CHUNK, BC=SUB,
                BV=cfg["block_v"], BVO=cfg["block_vo"],
                BLOCK_N=max(16, triton.next_power_of_2(num_seqs)), num_warps=cfg["num_warps"])
    grids = {PREPARE: num_slots, WALK: num_walkers, OUTPUT: num_outputs}
    if "roles" in cfg:
        roles = [cfg["roles"]]
    else:
        roles = [ALL_ROLES] if cfg["fused"] else [PREPARE, WALK, OUTPUT]
    return [gdn_prefill_kernel[(sum(n for r, n in grids.items() if r & rs),)](*args, ROLES=rs, **meta)
            for rs in roles]
