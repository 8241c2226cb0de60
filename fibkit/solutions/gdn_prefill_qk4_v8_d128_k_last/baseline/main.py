"""GDN prefill in PyTorch: the chunked delta rule (WY form, chunks of 64), all sequences and
heads at once, a Python loop only over chunks.

Shapes: q, k [T, 4, 128]; v [T, 8, 128]; a, b [T, 8]; cu_seqlens [N + 1]; state / new_state
[N, 8, 128(V), 128(K)] fp32; output [T, 8, 128] bf16.

Within a chunk with cumulative log-decay G (from the chunk start) and start state S [K, V]:
    u = (I + A)^-1 (beta * v - beta * exp(G) * k S),  A_ij = beta_i exp(G_i - G_j) k_i.k_j, j < i
    o_i = scale * (exp(G_i) q_i S + sum_{j<=i} exp(G_i - G_j) (q_i.k_j) u_j)
    S' = exp(G_last) S + sum_j exp(G_last - G_j) k_j^T u_j
Sequences are padded to whole chunks with k = v = q = 0, beta = 0 and no decay, which leaves
their state untouched; an empty sequence's new state is zero, as in the contest's reference.
"""
import torch
import torch.nn.functional as F

CHUNK = 64


@torch.no_grad()
def run(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale, output, new_state):
    total, num_qk, head_k = q.shape
    num_v, head_v = v.shape[1], v.shape[2]
    num_seqs = cu_seqlens.numel() - 1
    dev = q.device
    scale = scale if scale else head_k ** -0.5
    if num_seqs == 0:
        return
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()  # host sync: fine for a baseline
    chunks = max(1, -(-max(lengths) // CHUNK))
    padded = chunks * CHUNK

    # Token index of each padded position, -1 past the end of its sequence.
    pos = torch.arange(padded, device=dev)
    lens = cu_seqlens[1:] - cu_seqlens[:-1]
    tok = torch.where(pos[None] < lens[:, None], cu_seqlens[:-1, None] + pos[None], -1)  # [N, P]
    valid = tok >= 0
    safe = tok.clamp(min=0)

    def gather(x):  # [T, H, D] -> [N, H, C, L, D], zero where padded
        x = x.float().repeat_interleave(num_v // x.shape[1], dim=1)[safe] * valid[..., None, None]
        return x.view(num_seqs, chunks, CHUNK, num_v, -1).permute(0, 3, 1, 2, 4)

    qc, kc, vc = gather(q), gather(k), gather(v)
    log_g = -torch.exp(A_log) * F.softplus(a.float() + dt_bias)  # [T, H]
    log_g = (log_g[safe] * valid[..., None]).view(num_seqs, chunks, CHUNK, num_v).permute(0, 3, 1, 2)
    beta = (torch.sigmoid(b.float())[safe] * valid[..., None]).view(num_seqs, chunks, CHUNK, num_v)
    beta = beta.permute(0, 3, 1, 2)  # [N, H, C, L]
    G = log_g.cumsum(-1)

    causal = torch.ones(CHUNK, CHUNK, dtype=torch.bool, device=dev).tril()
    strict = causal.clone().fill_diagonal_(False)
    diff = G[..., :, None] - G[..., None, :]
    decay_in = torch.exp(diff.masked_fill(~causal, float("-inf")))  # exp(G_i - G_j), j <= i
    A = (kc @ kc.transpose(-1, -2)) * decay_in * beta[..., None] * strict
    eye = torch.eye(CHUNK, device=dev)
    T = torch.linalg.solve_triangular(eye + A, eye.expand_as(A), upper=False, unitriangular=True)
    W = T @ (kc * (beta * G.exp())[..., None])  # [N, H, C, L, K]
    U = T @ (vc * beta[..., None])  # [N, H, C, L, V]
    P = (qc @ kc.transpose(-1, -2)) * decay_in  # [N, H, C, L, L]
    tail = torch.exp(G[..., -1:] - G)  # exp(G_last - G_j)

    S = state.transpose(-1, -2).float().clone() if state is not None else \
        torch.zeros(num_seqs, num_v, head_k, head_v, device=dev)
    out = torch.empty(num_seqs, num_v, chunks, CHUNK, head_v, device=dev)
    for c in range(chunks):
        u = U[:, :, c] - W[:, :, c] @ S
        out[:, :, c] = scale * (G[:, :, c, :, None].exp() * (qc[:, :, c] @ S) + P[:, :, c] @ u)
        S = G[:, :, c, -1, None, None].exp() * S + (kc[:, :, c] * tail[:, :, c, :, None]).transpose(-1, -2) @ u

    flat = out.permute(0, 2, 3, 1, 4).reshape(num_seqs * padded, num_v, head_v)
    output[tok[valid]] = flat[valid.reshape(-1)].to(output.dtype)
    # An empty sequence's new state is zero, as in the contest's reference.
    new_state.copy_(torch.where((lens > 0)[:, None, None, None], S.transpose(-1, -2), 0.0))
