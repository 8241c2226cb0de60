"""GDN decode in PyTorch: one delta-rule step for every sequence and head at once.

Shapes: q, k [B, 1, 4, 128]; v [B, 1, 8, 128]; state / new_state [B, 8, 128(V), 128(K)] fp32
(k-last); output [B, 1, 8, 128] bf16. v head h reads q/k head h // 2.
"""
import torch
import torch.nn.functional as F


@torch.no_grad()
def run(q, k, v, state, A_log, a, dt_bias, b, scale, output, new_state):
    num_qk, head_k = q.shape[2], q.shape[3]
    num_v = v.shape[2]
    scale = scale if scale else head_k ** -0.5
    g = torch.exp(-torch.exp(A_log) * F.softplus(a[:, 0].float() + dt_bias))  # [B, H]
    beta = torch.sigmoid(b[:, 0].float())
    k_h = k[:, 0].float().repeat_interleave(num_v // num_qk, dim=1)  # [B, H, K]
    q_h = q[:, 0].float().repeat_interleave(num_v // num_qk, dim=1)

    if state is None:
        new_state.zero_()
    else:
        torch.mul(state, g[:, :, None, None], out=new_state)  # decay in place in the output
    predicted = torch.matmul(new_state, k_h.unsqueeze(-1)).squeeze(-1)  # S k: [B, H, V]
    delta = beta.unsqueeze(-1) * (v[:, 0].float() - predicted)
    new_state.add_(delta.unsqueeze(-1) * k_h.unsqueeze(-2))  # rank-1 update delta k^T
    out = torch.matmul(new_state, q_h.unsqueeze(-1)).squeeze(-1) * scale
    output[:, 0].copy_(out)
