"""Gated delta net decode: one recurrent step per sequence, k-last state [B, H, V, K]."""
import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def run(q, k, v, state, A_log, a, dt_bias, b, scale):
    """q, k: [B, 1, 4, 128] bf16; v: [B, 1, 8, 128] bf16; state: [B, 8, 128, 128] fp32 or None;
    A_log, dt_bias: [8] fp32; a, b: [B, 1, 8] bf16. Returns output [B, 1, 8, 128] bf16 and
    new_state [B, 8, 128, 128] fp32."""
    batch, _, num_qk_heads, head_k = q.shape
    num_v_heads, head_v = v.shape[2], v.shape[3]
    if scale is None or scale == 0.0:
        scale = 1.0 / math.sqrt(head_k)
    group = num_v_heads // num_qk_heads

    g = torch.exp(-torch.exp(A_log.float()) * F.softplus(a[:, 0].float() + dt_bias.float()))
    beta = torch.sigmoid(b[:, 0].float())  # [B, H]
    q_h = q[:, 0].float().repeat_interleave(group, dim=1)  # [B, H, K]
    k_h = k[:, 0].float().repeat_interleave(group, dim=1)
    v_h = v[:, 0].float()  # [B, H, V]

    if state is None:
        state = torch.zeros(batch, num_v_heads, head_v, head_k, dtype=torch.float32, device=q.device)
    s = g[:, :, None, None] * state.float()  # decayed state, [B, H, V, K]
    old_v = torch.einsum("bhvk,bhk->bhv", s, k_h)  # what the state predicts for k
    new_v = beta[..., None] * v_h + (1.0 - beta[..., None]) * old_v
    s = s + torch.einsum("bhv,bhk->bhvk", new_v - old_v, k_h)  # delta rule: move k's row to new_v
    out = scale * torch.einsum("bhvk,bhk->bhv", s, q_h)
    return out.unsqueeze(1).to(torch.bfloat16), s
