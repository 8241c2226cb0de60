"""CPU emulation of the CUDA prefill's fragment arithmetic (solution/kernel.cu), lane by lane,
against the float64 oracle: checks the m16n8k16 fragment layouts, the accumulator-to-operand
reuse and the hi/lo splits before any GPU time is spent. The walker is emulated lane by lane;
of the prepare kernel, its k k^T and q k^T fragment products (the rest is its math). One
sequence of 37 tokens, one head, one 64-row block.

    python wip/gdn_prefill_cuda/emulate.py
"""
import numpy as np
import torch

from fibkit.testing import gdn_oracle, gdn_prefill_inputs

C, K, V, ROWS = 16, 128, 128, 64
LANES = np.arange(32)
G, T = LANES // 4, LANES % 4  # groupID, thread in group


def bf16(x):
    return torch.tensor(np.asarray(x, dtype=np.float32)).bfloat16().float().numpy()


def split(x):
    hi = bf16(x)
    return hi, bf16(np.asarray(x, np.float32) - hi)


def mma(d, a, b):
    """d [32, 4] += A B, with a [32, 4, 2] (reg, half) and b [32, 2, 2] per lane, as PTX
    m16n8k16 row.col lays them out."""
    A = np.zeros((16, 16))
    B = np.zeros((16, 8))
    for lane in range(32):
        g, t = G[lane], T[lane]
        for reg in range(4):
            for half in range(2):
                A[g + 8 * (reg % 2), 2 * t + half + 8 * (reg // 2)] = a[lane, reg, half]
        for reg in range(2):
            for half in range(2):
                B[2 * t + half + 8 * reg, g] = b[lane, reg, half]
    D = A @ B
    out = d.copy()
    for lane in range(32):
        g, t = G[lane], T[lane]
        for e in range(4):
            out[lane, e] += D[g + 8 * (e // 2), 2 * t + (e % 2)]
    return out.astype(np.float32)


def to_operand(x):
    """x [2 tiles][32, 4] -> hi, lo [32, 4, 2] (the kernel's to_operand)."""
    regs = [(x[0][:, 0], x[0][:, 1]), (x[0][:, 2], x[0][:, 3]), (x[1][:, 0], x[1][:, 1]), (x[1][:, 2], x[1][:, 3])]
    hi = np.zeros((32, 4, 2), np.float32)
    lo = np.zeros((32, 4, 2), np.float32)
    for r, (x0, x1) in enumerate(regs):
        hi[:, r, 0], lo[:, r, 0] = split(x0)
        hi[:, r, 1], lo[:, r, 1] = split(x1)
    return hi, lo


def gram(x, y):
    """x y^T [16 x 16] through the prepare kernel's fragment loads and mma (rows of bf16 x, y)."""
    acc = [np.zeros((32, 4), np.float32), np.zeros((32, 4), np.float32)]
    for ks in range(K // 16):
        a = np.zeros((32, 4, 2), np.float32)
        for half in range(2):
            c = ks * 16 + 2 * T + half
            a[:, 0, half], a[:, 1, half] = x[G, c], x[G + 8, c]
            a[:, 2, half], a[:, 3, half] = x[G, c + 8], x[G + 8, c + 8]
        for nt in range(2):
            b = np.zeros((32, 2, 2), np.float32)
            for half in range(2):
                c = ks * 16 + 2 * T + half
                b[:, 0, half], b[:, 1, half] = y[nt * 8 + G, c], y[nt * 8 + G, c + 8]
            acc[nt] = mma(acc[nt], a, b)
    out = np.zeros((16, 16))
    for nt in range(2):
        for e in range(4):
            out[G + 8 * (e >> 1), nt * 8 + 2 * T + (e & 1)] = acc[nt][:, e]
    return out


def prepare(kc, qc, log_g, beta):
    """Tb, M hi / lo and the decay factors of one chunk (the prepare kernel's math, its
    products through `gram`)."""
    Gc = np.cumsum(log_g)
    i, j = np.meshgrid(np.arange(C), np.arange(C), indexing="ij")
    diff = np.where(j <= i, Gc[:, None] - Gc[None, :], -np.inf)
    assert np.allclose(gram(kc, kc), kc @ kc.T, atol=1e-5) and np.allclose(gram(qc, kc), qc @ kc.T, atol=1e-5)
    A = np.where(j < i, beta[:, None] * gram(kc, kc) * np.exp(diff), 0.0)
    Tm = np.linalg.inv(np.eye(C) + A)
    tb = (Tm * beta[None, :]).astype(np.float32)
    m = np.where(j <= i, gram(qc, kc) * np.exp(diff), 0.0).astype(np.float32)
    return split(tb), split(m), np.exp(Gc), np.exp(Gc[-1] - Gc), np.exp(Gc[-1])


def walk(q, k, v, state, log_g, beta, scale, head, block):
    """One block (4 warps) of the walker over one sequence; returns out [T, 64] and S [64, 128]."""
    hq = head // 2
    ntok = q.shape[0]
    out = np.zeros((ntok, ROWS), np.float32)
    S_all = np.zeros((ROWS, K), np.float32)
    for warp in range(4):
        row = block * ROWS + warp * 16
        S = np.zeros((16, 32, 4), np.float32)  # [nt][lane][e]
        for nt in range(16):
            for e in range(4):
                S[nt][:, e] = state[row + G + 8 * (e // 2), nt * 8 + 2 * T + (e % 2)]
        for c in range((ntok + C - 1) // C):
            toks = np.arange(c * C, c * C + C)
            valid = toks < ntok
            kc = np.where(valid[:, None], k[np.minimum(toks, ntok - 1), hq], 0.0).astype(np.float32)
            qc = np.where(valid[:, None], q[np.minimum(toks, ntok - 1), hq], 0.0).astype(np.float32)
            vc = np.where(valid[:, None], v[np.minimum(toks, ntok - 1), head, block * ROWS:(block + 1) * ROWS], 0.0)
            lg = np.where(valid, log_g[np.minimum(toks, ntok - 1)], 0.0)
            bt = np.where(valid, beta[np.minimum(toks, ntok - 1)], 0.0)
            (tb_hi, tb_lo), (m_hi, m_lo), eG, eTail, eLast = prepare(kc.astype(np.float64), qc.astype(np.float64), lg, bt)
            s_hi, s_lo = [], []
            for ks in range(8):
                h_, l_ = to_operand([S[2 * ks], S[2 * ks + 1]])
                s_hi.append(h_)
                s_lo.append(l_)
            zero = np.zeros((32, 4), np.float32)
            sk, sk_lo, sq, sq_lo = [[zero.copy(), zero.copy()] for _ in range(4)]
            for nt in range(2):
                for ks in range(8):
                    def frag(mat):
                        b = np.zeros((32, 2, 2), np.float32)
                        for half in range(2):
                            b[:, 0, half] = mat[nt * 8 + G, ks * 16 + 2 * T + half]
                            b[:, 1, half] = mat[nt * 8 + G, ks * 16 + 2 * T + half + 8]
                        return b
                    kb, qb = frag(kc), frag(qc)
                    sk[nt] = mma(sk[nt], s_hi[ks], kb)
                    sk_lo[nt] = mma(sk_lo[nt], s_lo[ks], kb)
                    sq[nt] = mma(sq[nt], s_hi[ks], qb)
                    sq_lo[nt] = mma(sq_lo[nt], s_lo[ks], qb)
            rhs = [zero.copy(), zero.copy()]
            for nt in range(2):
                for e in range(4):
                    tok = nt * 8 + 2 * T + (e & 1)
                    r = warp * 16 + G + 8 * (e >> 1)
                    rhs[nt][:, e] = bf16(vc[tok, r]) - (sk[nt][:, e] + sk_lo[nt][:, e]) * eG[tok]

            def op_frag(mat, ni):
                b = np.zeros((32, 2, 2), np.float32)
                for half in range(2):
                    b[:, 0, half] = mat[ni * 8 + G, 2 * T + half]
                    b[:, 1, half] = mat[ni * 8 + G, 2 * T + half + 8]
                return b
            r_hi, r_lo = to_operand(rhs)
            u = [zero.copy(), zero.copy()]
            for ni in range(2):
                u[ni] = mma(u[ni], r_hi, op_frag(tb_hi, ni))
                u[ni] = mma(u[ni], r_lo, op_frag(tb_hi, ni))
                u[ni] = mma(u[ni], r_hi, op_frag(tb_lo, ni))
            u_hi, u_lo = to_operand(u)
            o = [zero.copy(), zero.copy()]
            for ni in range(2):
                for e in range(4):
                    o[ni][:, e] = (sq[ni][:, e] + sq_lo[ni][:, e]) * eG[ni * 8 + 2 * T + (e & 1)]
                o[ni] = mma(o[ni], u_hi, op_frag(m_hi, ni))
                o[ni] = mma(o[ni], u_lo, op_frag(m_hi, ni))
                o[ni] = mma(o[ni], u_hi, op_frag(m_lo, ni))
                for e in range(4):
                    tok = c * C + ni * 8 + 2 * T + (e & 1)
                    ok = tok < ntok
                    out[tok[ok], (warp * 16 + G + 8 * (e >> 1))[ok]] = bf16(o[ni][:, e] * scale)[ok]
            up = [zero.copy(), zero.copy()]
            for ni in range(2):
                for e in range(4):
                    up[ni][:, e] = u[ni][:, e] * eTail[ni * 8 + 2 * T + (e & 1)]
            p_hi, p_lo = to_operand(up)
            for nt in range(16):
                col = nt * 8 + G
                b = np.zeros((32, 2, 2), np.float32)
                for half in range(2):
                    b[:, 0, half] = kc[2 * T + half, col]
                    b[:, 1, half] = kc[2 * T + 8 + half, col]
                S[nt] = S[nt] * eLast
                S[nt] = mma(S[nt], p_hi, b)
                S[nt] = mma(S[nt], p_lo, b)
        for nt in range(16):
            for e in range(4):
                S_all[warp * 16 + G + 8 * (e // 2), nt * 8 + 2 * T + (e % 2)] = S[nt][:, e]
    return out, S_all


def main():
    args = gdn_prefill_inputs([37], "cpu", seed=4)
    q, k, v, state, A_log, a, dt_bias, b, cu, scale = args
    ref_out, ref_state = gdn_oracle(*args)
    head, block = 3, 1
    x = a[:, head].double() + dt_bias[head].double()
    log_g = (-A_log[head].double().exp() * torch.nn.functional.softplus(x)).numpy()
    beta = torch.sigmoid(b[:, head].double()).numpy()
    out, S = walk(q.float().numpy(), k.float().numpy(), v.float().numpy(), state[0, head].numpy(),
                  log_g, beta, 128 ** -0.5, head, block)
    want_out = ref_out[:, head, block * ROWS:(block + 1) * ROWS].numpy()
    want_S = ref_state[0, head, block * ROWS:(block + 1) * ROWS].numpy()
    print("output max err / max:", np.abs(out - want_out).max() / np.abs(want_out).max())
    print("state  max err / max:", np.abs(S - want_S).max() / np.abs(want_S).max())


if __name__ == "__main__":
    main()
