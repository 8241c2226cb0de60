"""GDN decode as one Triton kernel per call.

Shapes: q, k [B, 1, 4, 128] bf16; v [B, 1, 8, 128] bf16; a, b [B, 1, 8] bf16; A_log, dt_bias
[8] fp32; state / new_state [B, 8, 128 (V), 128 (K)] fp32, k-last; output [B, 1, 8, 128] bf16.
v head h reads q/k head h // 2.

The step is memory-bound on the state (64 KiB read + 64 KiB written per sequence and head),
and every state row v is independent:
    S_v <- g S_v;  S_v <- S_v + beta (v_v - S_v.k) k;  o_v = scale S_v.q
so a program owns BV rows of one (sequence, head), loads them once, keeps them in registers
for both reductions and the rank-1 update, and writes them once. Programs are small (8 rows,
one warp) so that even at batch 1 there are enough of them to keep every SM's loads in flight.
"""
import triton
import triton.language as tl

HEAD_K = 128
HEAD_V = 128


@triton.jit
def gdn_decode_kernel(q_ptr, k_ptr, v_ptr, state_ptr, A_log_ptr, a_ptr, dt_bias_ptr, b_ptr,
                      out_ptr, new_state_ptr, scale,
                      HAS_STATE: tl.constexpr, NUM_V_HEADS: tl.constexpr, GROUP: tl.constexpr,
                      K: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, FUSED: tl.constexpr):
    # One flat grid, a head's row blocks consecutive: the programs the scheduler starts together
    # read and write one contiguous 64 KiB head, not 16 heads 64 KiB apart (H200: B = 64
    # 19.5 -> 18.7 us, B = 128 38.6 -> 35.5 us).
    row_blocks: tl.constexpr = V // BV
    seq_head = tl.program_id(0) // row_blocks  # = sequence * NUM_V_HEADS + v head
    row_block = tl.program_id(0) % row_blocks
    head = seq_head % NUM_V_HEADS
    qk_row = (seq_head // NUM_V_HEADS) * (NUM_V_HEADS // GROUP) + head // GROUP

    offs_k = tl.arange(0, K)
    rows = row_block * BV + tl.arange(0, BV)
    k = tl.load(k_ptr + qk_row * K + offs_k).to(tl.float32)
    q = tl.load(q_ptr + qk_row * K + offs_k).to(tl.float32)
    v = tl.load(v_ptr + seq_head * V + rows).to(tl.float32)

    # Gates, as in the definition: g = exp(-exp(A_log) softplus(a + dt_bias)), beta = sigmoid(b).
    x = tl.load(a_ptr + seq_head).to(tl.float32) + tl.load(dt_bias_ptr + head)
    softplus = tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(x)))  # torch's threshold
    g = tl.exp(-tl.exp(tl.load(A_log_ptr + head)) * softplus)
    beta = tl.sigmoid(tl.load(b_ptr + seq_head).to(tl.float32))

    state_offs = seq_head.to(tl.int64) * V * K + rows[:, None] * K + offs_k[None, :]
    if HAS_STATE:
        # No cache hint: evict_first here measured 1-4% slower from B = 48 on (B = 128: 35.9
        # -> 34.5 us); the store's hint (evict_first, .cs or none) made no difference.
        s = tl.load(state_ptr + state_offs) * g
    else:
        s = tl.zeros((BV, K), dtype=tl.float32)
    delta = beta * (v - tl.sum(s * k[None, :], axis=1))  # beta (v - S k), per row
    if FUSED:
        # o = scale (S + delta k^T) q = scale (S q + delta (k . q)): both reductions read the
        # loaded rows, so the update is only stored, never reduced again.
        out = (tl.sum(s * q[None, :], axis=1) + delta * tl.sum(k * q, axis=0)) * scale
        s = s + delta[:, None] * k[None, :]
    else:
        s = s + delta[:, None] * k[None, :]
        out = tl.sum(s * q[None, :], axis=1) * scale
    tl.store(new_state_ptr + state_offs, s, eviction_policy="evict_first")
    tl.store(out_ptr + seq_head * V + rows, out.to(out_ptr.dtype.element_ty))


def launch_config(batch: int):
    """(BV, num_warps, fused). 8 rows per one-warp program at every batch size: the most
    programs, hence the most loads in flight, for the fewest instructions per byte (H200
    sweeps, docs/perf-notes.md: 4-32 rows, 1-8 warps, rows looped over with software
    pipelining; none faster). The fused output (FUSED above) measured faster only between
    ~16 and 32 sequences (B = 32: 10.9 -> 9.6 us, twice) and slower at B <= 8 and >= 48."""
    return 8, 1, 12 <= batch <= 40


def run(q, k, v, state, A_log, a, dt_bias, b, scale, output, new_state):
    """The contest entry point (destination-passing): writes output and new_state."""
    launch(q, k, v, state, A_log, a, dt_bias, b, scale, output, new_state)


def launch(q, k, v, state, A_log, a, dt_bias, b, scale, output, new_state, config=None):
    """run() with an explicit (BV, num_warps, fused) for sweeps; None picks launch_config(B)."""
    batch, _, num_qk_heads, head_k = q.shape
    num_v_heads, head_v = v.shape[2], v.shape[3]
    if (head_k, head_v) != (HEAD_K, HEAD_V):
        raise ValueError(f"gdn decode: head sizes must be {HEAD_K}, got {head_k} and {head_v}")
    if batch == 0:
        return
    scale = float(scale) if scale else head_k ** -0.5
    block_v, num_warps, fused = config or launch_config(batch)
    grid = (batch * num_v_heads * (head_v // block_v),)
    gdn_decode_kernel[grid](
        q, k, v, state if state is not None else new_state, A_log, a, dt_bias, b,
        output, new_state, scale,
        HAS_STATE=state is not None, NUM_V_HEADS=num_v_heads, GROUP=num_v_heads // num_qk_heads,
        K=head_k, V=head_v, BV=block_v, FUSED=fused, num_warps=num_warps)
