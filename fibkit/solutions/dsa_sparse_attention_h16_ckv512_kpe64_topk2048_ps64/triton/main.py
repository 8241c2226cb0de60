"""DSA sparse MLA attention, split-K (flash-decoding style).

Shapes: q_nope [T, 16, 512], q_pe [T, 16, 64] bf16; ckv_cache [P, 64, 512], kpe_cache [P, 64,
64] bf16; sparse_indices [T, 2048] int32 (page * 64 + offset, -1 = padding anywhere);
output [T, 16, 512] bf16; lse [T, 16] fp32, base 2 (-inf and a zero output for a token whose
slots are all padding).

Per token the work is ~2.36 MB of gathered KV rows and little arithmetic, so a token's 2048
slots are split over SPLITS programs (each gathers whole 1 KiB ckv rows for all 16 heads, keeps
an online softmax in base 2, and writes a partial: acc [16, 512] fp32 and per-head max m and
sum l), and the partials are combined:
    m* = max_i m_i,  out = sum_i 2^(m_i - m*) acc_i / sum_i 2^(m_i - m*) l_i,
    lse = m* + log2(sum_i 2^(m_i - m*) l_i).
Combine forms: "separate" is a second launch, one program per (token, head); "fused" keeps
one launch: every split program, once its token's partials are all written (a per-token
counter), combines its own 512 / SPLITS output columns. That needs all of a token's programs
resident at once, so the launcher keeps T * SPLITS <= the SM count. (The Triton interpreter
runs programs one after another and can only check the separate form.)
"""
import torch
import triton
import triton.language as tl

HEADS, D_CKV, D_KPE, TOPK = 16, 512, 64, 2048
LOG2E = 1.4426950408889634


@triton.jit
def _split_attention(t, split, q_nope_ptr, q_pe_ptr, ckv_ptr, kpe_ptr, idx_ptr, acc_ptr, ml_ptr,
                     qk_scale, SPLITS: tl.constexpr, BN: tl.constexpr, H: tl.constexpr,
                     DC: tl.constexpr, DP: tl.constexpr, N: tl.constexpr):
    heads = tl.arange(0, H)
    dc = tl.arange(0, DC)
    dp = tl.arange(0, DP)
    q_nope = tl.load(q_nope_ptr + (t * H + heads[:, None]) * DC + dc[None, :])
    q_pe = tl.load(q_pe_ptr + (t * H + heads[:, None]) * DP + dp[None, :])
    m = tl.full((H,), float("-inf"), tl.float32)
    l = tl.zeros((H,), tl.float32)
    acc = tl.zeros((H, DC), tl.float32)
    PER: tl.constexpr = N // SPLITS
    for start in range(split * PER, (split + 1) * PER, BN):
        idx = tl.load(idx_ptr + t * N + start + tl.arange(0, BN))
        valid = idx >= 0
        rows = tl.where(valid, idx, 0).to(tl.int64)
        kc = tl.load(ckv_ptr + rows[:, None] * DC + dc[None, :], mask=valid[:, None], other=0.0)
        kp = tl.load(kpe_ptr + rows[:, None] * DP + dp[None, :], mask=valid[:, None], other=0.0)
        s = (tl.dot(q_nope, tl.trans(kc)) + tl.dot(q_pe, tl.trans(kp))) * qk_scale  # log2 units
        s = tl.where(valid[None, :], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        # A head with nothing valid yet keeps m = -inf: guard the -inf - -inf of its rescale.
        alpha = tl.where(m_new == float("-inf"), 1.0, tl.exp2(m - m_new))
        p = tl.where(valid[None, :], tl.exp2(s - m_new[:, None]), 0.0)
        l = l * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(kc.dtype), kc)
        m = m_new
    part = t * SPLITS + split
    tl.store(acc_ptr + (part * H + heads[:, None]) * DC + dc[None, :], acc)
    tl.store(ml_ptr + (part * 2) * H + heads, m)
    tl.store(ml_ptr + (part * 2 + 1) * H + heads, l)


@triton.jit
def _combine(t, heads, cols, acc_ptr, ml_ptr, out_ptr, lse_ptr, write_lse,
             SPLITS: tl.constexpr, H: tl.constexpr, DC: tl.constexpr):
    """Combine the SPLITS partials of token t for the given heads and output columns."""
    splits = tl.arange(0, SPLITS)
    part = t * SPLITS + splits
    m = tl.load(ml_ptr + (part[:, None] * 2) * H + heads[None, :], cache_modifier=".cg")
    l = tl.load(ml_ptr + (part[:, None] * 2 + 1) * H + heads[None, :], cache_modifier=".cg")
    m_all = tl.max(m, axis=0)
    w = tl.where(m == float("-inf"), 0.0, tl.exp2(m - m_all[None, :]))  # [SPLITS, heads]
    denom = tl.sum(w * l, axis=0)
    acc = tl.load(acc_ptr + ((part[:, None, None] * H + heads[None, :, None]) * DC
                             + cols[None, None, :]), cache_modifier=".cg")
    out = tl.sum(acc * w[:, :, None], axis=0) / tl.where(denom > 0, denom, 1.0)[:, None]
    tl.store(out_ptr + (t * H + heads[:, None]) * DC + cols[None, :], out.to(out_ptr.dtype.element_ty))
    if write_lse:
        lse = tl.where(denom > 0, m_all + tl.log2(tl.where(denom > 0, denom, 1.0)), float("-inf"))
        tl.store(lse_ptr + t * H + heads, lse)


@triton.jit
def dsa_split_kernel(q_nope_ptr, q_pe_ptr, ckv_ptr, kpe_ptr, idx_ptr, out_ptr, lse_ptr, acc_ptr,
                     ml_ptr, count_ptr, qk_scale,
                     FUSED: tl.constexpr, SPLITS: tl.constexpr, BN: tl.constexpr,
                     H: tl.constexpr, DC: tl.constexpr, DP: tl.constexpr, N: tl.constexpr):
    t = tl.program_id(0)
    split = tl.program_id(1)
    _split_attention(t, split, q_nope_ptr, q_pe_ptr, ckv_ptr, kpe_ptr, idx_ptr, acc_ptr, ml_ptr,
                     qk_scale, SPLITS, BN, H, DC, DP, N)
    if FUSED:
        tl.debug_barrier()
        tl.atomic_add(count_ptr + t, 1, sem="release")
        while tl.atomic_add(count_ptr + t, 0, sem="acquire") < SPLITS:
            pass
        CW: tl.constexpr = DC // SPLITS
        _combine(t, tl.arange(0, H), split * CW + tl.arange(0, CW), acc_ptr, ml_ptr, out_ptr,
                 lse_ptr, split == 0, SPLITS, H, DC)
        # Second round of the counter: the last program out resets it for the next call.
        tl.debug_barrier()
        if tl.atomic_add(count_ptr + t, 1, sem="acq_rel") == 2 * SPLITS - 1:
            tl.atomic_xchg(count_ptr + t, 0)


@triton.jit
def dsa_combine_kernel(acc_ptr, ml_ptr, out_ptr, lse_ptr,
                       SPLITS: tl.constexpr, H: tl.constexpr, DC: tl.constexpr, CB: tl.constexpr):
    """One program per (token, head, CB output columns)."""
    t = tl.program_id(0)
    block = tl.program_id(2)
    _combine(t, tl.program_id(1) + tl.arange(0, 1), block * CB + tl.arange(0, CB), acc_ptr, ml_ptr,
             out_ptr, lse_ptr, block == 0, SPLITS, H, DC)


_COUNTERS = {}  # per device: per-token arrival counters, zeroed once; the kernel re-zeroes them


def _arrival_counters(device, count):
    buf = _COUNTERS.get(device)
    if buf is None or buf.numel() < count:
        buf = _COUNTERS[device] = torch.zeros(max(count, 1024), dtype=torch.int32, device=device)
    return buf


def _sm_count(device) -> int:
    if device.type != "cuda":
        return 132
    return torch.cuda.get_device_properties(device).multi_processor_count


def launch_config(tokens: int, sm_count: int, on_gpu: bool = True) -> dict:
    """Splits so that all of a token's programs fit on the SMs at once (the fused combine waits
    for them), as many as that allows up to 64. Off the GPU (the interpreter) the combine is
    separate: programs there run one at a time and could not wait."""
    splits = 64
    while splits > 1 and tokens * splits > sm_count:
        splits //= 2
    fused = on_gpu and splits > 1
    return dict(combine="fused" if fused else "separate", splits=splits, num_warps=4,
                num_stages=3)


def run(q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, sm_scale, output, lse):
    """The contest entry point (destination-passing): writes output and lse."""
    launch(q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, sm_scale, output, lse)


def launch(q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, sm_scale, output, lse, config=None):
    tokens = q_nope.shape[0]
    if tokens == 0:
        return
    on_gpu = q_nope.device.type == "cuda"
    cfg = dict(launch_config(tokens, _sm_count(q_nope.device), on_gpu), **(config or {}))
    splits = cfg["splits"]
    block_n = cfg.get("block_n", min(64, TOPK // splits))  # slots per step (H200 sweep: 32-64)
    if TOPK % (splits * block_n) or (cfg["combine"] == "fused" and D_CKV % splits):
        raise ValueError(f"dsa attention: splits {splits} x block {block_n} must divide {TOPK}")
    acc = torch.empty(tokens * splits, HEADS, D_CKV, dtype=torch.float32, device=q_nope.device)
    ml = torch.empty(tokens * splits, 2, HEADS, dtype=torch.float32, device=q_nope.device)
    fused = cfg["combine"] == "fused"
    counts = _arrival_counters(q_nope.device, tokens) if fused else acc
    dsa_split_kernel[(tokens, splits)](
        q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, output, lse, acc, ml, counts,
        float(sm_scale) * LOG2E, FUSED=fused, SPLITS=splits, BN=block_n, H=HEADS, DC=D_CKV,
        DP=D_KPE, N=TOPK, num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    if not fused:
        cols = 128
        dsa_combine_kernel[(tokens, HEADS, D_CKV // cols)](
            acc, ml, output, lse, SPLITS=splits, H=HEADS, DC=D_CKV, CB=cols, num_warps=4)
