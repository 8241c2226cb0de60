"""GDN prefill over packed variable-length sequences: the chunked delta rule (WY form, chunks
of 16 or 32), with each program walking one sequence's chunks while its slice of the state
stays in registers. No program ever waits on another.

Shapes: q, k [T, 4, 128] bf16; v [T, 8, 128] bf16; a, b [T, 8] bf16; A_log, dt_bias [8] fp32;
cu_seqlens [N + 1] int64; state / new_state [N, 8, 128 (V), 128 (K)] fp32, k-last; output
[T, 8, 128] bf16. v head h reads q/k head h // 2.

Math, per sequence and head, for one chunk of C tokens with state S [V, K] at its start, log
gates G (cumulative from the chunk start, G_l at its last token) and beta:
    A_ij = beta_i exp(G_i - G_j) k_i.k_j  (j < i),    Tb = (I + A)^-1 diag(beta)
    M_ij = exp(G_i - G_j) q_i.k_j          (j <= i)                 <- independent of S
    u^T = (v^T - (S k^T) diag(exp(G))) Tb^T                           [V, C]
    o^T = scale ((S q^T) diag(exp(G)) + u^T M^T)                      [V, C]
    S  <- exp(G_l) S + (u^T diag(exp(G_l - G))) k                     [V, K]
Everything is written with the state's V rows as the row dimension, so S and u^T are always
the left operand of a product: the chain from one chunk's state to the next stays in
registers, and only k, q, Tb and M (loaded or built off the chain) go through shared memory.
(Measured on the H200, docs/perf-notes.md v4: the chain is still issue-bound on Triton's
lowering of 16- and 32-row products, 1.75 us per 16-token chunk; the CUDA solution beside
this one, the default, keeps the same chain in mma.sync fragments. This one is its twin on the
CPU, through the interpreter.)

Two launch forms (launch_config picks by size):
  * one kernel: each walker also builds its chunks' Tb and M. Best while a call is a few
    chunks long and a second launch's gap would cost more than the work it removes.
  * prepare + walk: a prepare program per (chunk, head) builds Tb and M once into a per-call
    workspace; walkers load them, so only the chain is left in the serial loop, and the work
    is not repeated by the 128 / BV walkers of a head.
Chunks start at their sequence's first token. Their count, sum ceil(len / C), is bounded by
T // C + N without reading cu_seqlens on the host: chunk c of sequence n has workspace slot
cu[n] // C + n + c, which never collides with the next sequence's first slot.
"""
import torch
import triton
import triton.language as tl

HEAD_K = 128
HEAD_V = 128


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
def _rows(ptr, tok, valid, head, HEADS: tl.constexpr, D: tl.constexpr, cols):
    """Rows `tok`, columns `cols` of one head of a [T, HEADS, D] tensor, zero where not valid."""
    return tl.load(ptr + (tok[:, None] * HEADS + head) * D + cols[None, :],
                   mask=valid[:, None], other=0.0)


@triton.jit
def _decay(g_rows, g_cols, INCLUSIVE: tl.constexpr):
    """exp(G_i - G_j) on (strictly, unless INCLUSIVE) lower entries, 0 above; masked before
    the exponential, which would overflow where j > i."""
    r = tl.arange(0, g_rows.shape[0])
    if INCLUSIVE:
        lower = r[:, None] >= r[None, :]
    else:
        lower = r[:, None] > r[None, :]
    return tl.exp(tl.where(lower, g_rows[:, None] - g_cols[None, :], float("-inf")))


@triton.jit
def _unit_lower_inverse(a, PRECISION: tl.constexpr):
    """(I + a)^-1 for strictly lower-triangular a [C, C], C a power of two: with p = -a
    nilpotent, the inverse is sum_k p^k = (I + p)(I + p^2)(I + p^4)...(I + p^(C/2))."""
    C: tl.constexpr = a.shape[0]
    r = tl.arange(0, C)
    p = -a
    x = (r[:, None] == r[None, :]).to(tl.float32) + p
    for level in tl.static_range(1, 8):
        if (1 << level) < C:  # factors (I + p^2) ... (I + p^(C/2))
            p = tl.dot(p, p, input_precision=PRECISION)
            x = x + tl.dot(x, p, input_precision=PRECISION)
    return x


@triton.jit
def _chunk_operators(q, k, log_g, beta, PRECISION: tl.constexpr):
    """Tb = (I + A)^-1 diag(beta) and M of one chunk (see the module docstring)."""
    g = tl.cumsum(log_g, 0)
    a = tl.dot(k, tl.trans(k)) * _decay(g, g, False) * beta[:, None]  # bf16 products: exact
    tb = _unit_lower_inverse(a, PRECISION) * beta[None, :]
    m = tl.dot(q, tl.trans(k)) * _decay(g, g, True)
    return tb, m


@triton.jit
def _dot_f32_bf16(x, y, SPLIT: tl.constexpr):
    """x @ y for fp32 x and bf16 y. SPLIT: x = hi + lo in bf16, two exact bf16 products that
    carry ~16 bits of x; else one tf32 product (10 bits)."""
    if SPLIT:
        hi = x.to(tl.bfloat16)
        lo = (x - hi.to(tl.float32)).to(tl.bfloat16)
        return tl.dot(hi, y) + tl.dot(lo, y)
    else:
        return tl.dot(x, y.to(tl.float32), input_precision="tf32")


@triton.jit
def _chunk_slot(cu_ptr, num_seqs, work, BLOCK_N: tl.constexpr, C: tl.constexpr):
    """Sequence and first token of workspace slot `work` (seq = -1: an unused slot)."""
    ids = tl.arange(0, BLOCK_N)
    starts = tl.load(cu_ptr + ids, mask=ids <= num_seqs, other=0)
    first_slot = tl.where(ids < num_seqs, starts // C + ids, 1 << 62)
    seq = tl.sum((first_slot <= work).to(tl.int32), 0) - 1
    bos = tl.sum(tl.where(ids == seq, starts, 0), 0)
    eos = tl.sum(tl.where(ids == seq + 1, starts, 0), 0)
    tok0 = bos + (work - (bos // C + seq)) * C
    return tl.where(tok0 < eos, seq, -1), tok0, eos


# ----------------------------------------------------------------------------- kernels

@triton.jit
def gdn_prefill_prepare_kernel(q_ptr, k_ptr, A_log_ptr, a_ptr, dt_bias_ptr, b_ptr, cu_ptr,
                               tb_ptr, m_ptr, num_seqs,
                               PRECISION: tl.constexpr, H: tl.constexpr, HQK: tl.constexpr,
                               K: tl.constexpr, C: tl.constexpr, BLOCK_N: tl.constexpr):
    """Tb and M of one (chunk slot, head): program (slot, head)."""
    work = tl.program_id(0)
    head = tl.program_id(1)
    seq, tok0, eos = _chunk_slot(cu_ptr, num_seqs, work, BLOCK_N, C)
    if seq >= 0:
        qk_head = head // (H // HQK)
        tok = tok0 + tl.arange(0, C)
        valid = tok < eos
        cols = tl.arange(0, K)
        q = _rows(q_ptr, tok, valid, qk_head, HQK, K, cols)
        k = _rows(k_ptr, tok, valid, qk_head, HQK, K, cols)
        log_g, beta = _gates(a_ptr, b_ptr, tok, valid, head,
                             tl.exp(tl.load(A_log_ptr + head)), tl.load(dt_bias_ptr + head), H)
        tb, m = _chunk_operators(q, k, log_g, beta, PRECISION)
        r = tl.arange(0, C)
        at = (work * H + head).to(tl.int64) * C * C + r[:, None] * C + r[None, :]
        tl.store(tb_ptr + at, tb)
        tl.store(m_ptr + at, m)


@triton.jit
def gdn_prefill_walk_kernel(q_ptr, k_ptr, v_ptr, state_ptr, A_log_ptr, a_ptr, dt_bias_ptr, b_ptr,
                            cu_ptr, tb_ptr, m_ptr, out_ptr, new_state_ptr, scale,
                            HAS_STATE: tl.constexpr, PREPARED: tl.constexpr,
                            SPLIT: tl.constexpr, PRECISION: tl.constexpr, STAGES: tl.constexpr,
                            H: tl.constexpr, HQK: tl.constexpr, K: tl.constexpr,
                            V: tl.constexpr, C: tl.constexpr, BV: tl.constexpr):
    """One sequence, head and BV rows of the state: program (seq, head, row block). Triton's
    pipeliner prefetches the next chunk's loads (STAGES); a hand-written prefetch of the
    loads and chunk operators measured slower (more registers, spills)."""
    seq = tl.program_id(0)
    head = tl.program_id(1)
    rows = tl.program_id(2) * BV + tl.arange(0, BV)
    qk_head = head // (H // HQK)
    decay_rate = tl.exp(tl.load(A_log_ptr + head))
    dt_bias = tl.load(dt_bias_ptr + head)
    bos = tl.load(cu_ptr + seq)
    eos = tl.load(cu_ptr + seq + 1)
    cols = tl.arange(0, K)
    r = tl.arange(0, C)

    state_at = ((seq * H + head).to(tl.int64) * V + rows[:, None]) * K + cols[None, :]
    if HAS_STATE:
        s = tl.load(state_ptr + state_at)
    else:
        s = tl.zeros([BV, K], dtype=tl.float32)
    slot0 = bos // C + seq
    for c in tl.range(0, tl.cdiv(eos - bos, C), num_stages=STAGES):
        tok = bos + c * C + r
        valid = tok < eos
        q = _rows(q_ptr, tok, valid, qk_head, HQK, K, cols)
        k = _rows(k_ptr, tok, valid, qk_head, HQK, K, cols)
        v_t = tl.trans(_rows(v_ptr, tok, valid, head, H, V, rows))  # [BV, C]
        log_g, beta = _gates(a_ptr, b_ptr, tok, valid, head, decay_rate, dt_bias, H)
        if PREPARED:
            at = ((slot0 + c) * H + head).to(tl.int64) * C * C + r[:, None] * C + r[None, :]
            tb = tl.load(tb_ptr + at)
            m = tl.load(m_ptr + at)
        else:
            tb, m = _chunk_operators(q, k, log_g, beta, PRECISION)
        g = tl.cumsum(log_g, 0)
        g_last = tl.sum(log_g, 0)
        # The chain: S -> S k^T -> u^T -> the next S. S q^T and u^T M^T hang off it.
        sk = _dot_f32_bf16(s, tl.trans(k), SPLIT)
        u_t = tl.dot(v_t - sk * tl.exp(g)[None, :], tl.trans(tb), input_precision=PRECISION)
        o_t = _dot_f32_bf16(s, tl.trans(q), SPLIT) * tl.exp(g)[None, :]
        o_t = (o_t + tl.dot(u_t, tl.trans(m), input_precision=PRECISION)) * scale
        tl.store(out_ptr + (tok[None, :] * H + head) * V + rows[:, None],
                 o_t.to(out_ptr.dtype.element_ty), mask=valid[None, :])
        s = s * tl.exp(g_last) + _dot_f32_bf16(u_t * tl.exp(g_last - g)[None, :], k, SPLIT)
    # An empty sequence's new state is zero, as in the contest's reference.
    tl.store(new_state_ptr + state_at, tl.where(eos > bos, s, 0.0))


# ----------------------------------------------------------------------------- launch

# prepared: the prepare + walk form (else one kernel); block_v: state rows per walker;
# chunk: tokens per chunk; split: the state's products as two bf16 halves (else tf32);
# precision: products of fp32 chunk operators; stages: walker load pipelining.
DEFAULT_CONFIG = dict(prepared=False, chunk=16, block_v=16, split=True, precision="tf32x3",
                      stages=2, num_warps=4, prepare_warps=4)


def launch_config(total_tokens: int, num_seqs: int) -> dict:
    """Launch parameters by problem size (docs/perf-notes.md has the sweeps). Up to 256
    tokens one kernel on 2 warps (a second launch's gap would cost more than it saves). Above,
    prepare + walk: chunks of 32 for fewer than 8 sequences, where the serial chain per
    sequence is what takes the time; chunks of 16 and 64 state rows per walker for 8 or more,
    where 64 walkers per sequence would queue behind each other on the SMs."""
    cfg = dict(DEFAULT_CONFIG)
    if total_tokens <= 256:
        cfg["num_warps"] = 2
    elif num_seqs < 8:
        cfg.update(prepared=True, chunk=32)
    else:
        cfg.update(prepared=True, block_v=64)
    return cfg


def run(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale, output, new_state):
    """The contest entry point (destination-passing): writes output and new_state."""
    launch(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale, output, new_state)


def launch(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale, output, new_state,
           config=None):
    """run() with explicit launch parameters (keys of DEFAULT_CONFIG) for sweeps; returns the
    compiled kernels launched (n_regs, n_spills)."""
    total, num_qk_heads, head_k = q.shape
    num_v_heads, head_v = v.shape[1], v.shape[2]
    if (head_k, head_v) != (HEAD_K, HEAD_V):
        raise ValueError(f"gdn prefill: head sizes must be {HEAD_K}, got {head_k} and {head_v}")
    num_seqs = cu_seqlens.numel() - 1
    if num_seqs <= 0:
        return []
    cfg = dict(launch_config(total, num_seqs), **(config or {}))
    scale = float(scale) if scale else head_k ** -0.5
    chunk = cfg["chunk"]
    shape = dict(H=num_v_heads, HQK=num_qk_heads, K=head_k, C=chunk)
    kernels = []
    if cfg["prepared"]:
        num_slots = total // chunk + num_seqs
        tb = torch.empty(num_slots, num_v_heads, chunk, chunk, device=q.device,
                         dtype=torch.float32)
        m = torch.empty_like(tb)
        kernels.append(gdn_prefill_prepare_kernel[(num_slots, num_v_heads)](
            q, k, A_log, a, dt_bias, b, cu_seqlens, tb, m, num_seqs,
            PRECISION=cfg["precision"], BLOCK_N=triton.next_power_of_2(num_seqs + 1),
            num_warps=cfg["prepare_warps"], **shape))
    else:
        tb = m = output  # unprepared: the kernel never reads tb_ptr or m_ptr; any tensor fills the slot
    grid = (num_seqs, num_v_heads, head_v // cfg["block_v"])
    kernels.append(gdn_prefill_walk_kernel[grid](
        q, k, v, state if state is not None else new_state, A_log, a, dt_bias, b, cu_seqlens,
        tb, m, output, new_state, scale,
        HAS_STATE=state is not None, PREPARED=cfg["prepared"], SPLIT=cfg["split"],
        PRECISION=cfg["precision"], STAGES=cfg["stages"], V=head_v, BV=cfg["block_v"],
        num_warps=cfg["num_warps"], **shape))
    return kernels
