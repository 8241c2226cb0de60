"""Gated delta net prefill over packed variable-length sequences, k-last state [N, H, V, K].

The recurrence is walked token by token (it is the definition), but every sequence and head
advances together: step t updates token t of every sequence still running.
"""
import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def run(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale):
    """q, k: [T, 4, 128] bf16; v: [T, 8, 128] bf16; state: [N, 8, 128, 128] fp32 or None;
    a, b: [T, 8] bf16; cu_seqlens: [N + 1] int64. Returns output [T, 8, 128] bf16 and
    new_state [N, 8, 128, 128] fp32."""
    total, num_qk_heads, head_k = q.shape
    num_v_heads, head_v = v.shape[1], v.shape[2]
    num_seqs = cu_seqlens.numel() - 1
    device = q.device
    if scale is None or scale == 0.0:
        scale = 1.0 / math.sqrt(head_k)
    group = num_v_heads // num_qk_heads

    g = torch.exp(-torch.exp(A_log.float()) * F.softplus(a.float() + dt_bias.float()))  # [T, H]
    beta = torch.sigmoid(b.float())
    q_h = q.float().repeat_interleave(group, dim=1)  # [T, H, K]
    k_h = k.float().repeat_interleave(group, dim=1)
    v_h = v.float()

    if state is None:
        s = torch.zeros(num_seqs, num_v_heads, head_v, head_k, dtype=torch.float32, device=device)
    else:
        s = state.float().clone()

    # Lay tokens out as [step, sequence]. Past a sequence's end the step has g = 1, beta = 0
    # and k = 0, which leaves its state exactly unchanged, so no step needs a mask or a sync.
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    max_len = int(lengths.max().item()) if num_seqs > 0 else 0
    step = torch.arange(max_len, device=device)[:, None]
    live = step < lengths[None, :]  # [L, N]
    tok = torch.where(live, cu_seqlens[:-1][None, :] + step, 0)
    g_s = torch.where(live[..., None], g[tok], 1.0)
    beta_s = torch.where(live[..., None], beta[tok], 0.0)[..., None]
    k_s = k_h[tok] * live[..., None, None]
    q_s, v_s = q_h[tok], v_h[tok]
    out = torch.empty(max_len, num_seqs, num_v_heads, head_v, dtype=torch.float32, device=device)
    for t in range(max_len):
        s = g_s[t][:, :, None, None] * s
        old_v = torch.einsum("nhvk,nhk->nhv", s, k_s[t])  # what the state predicts for k
        new_v = beta_s[t] * v_s[t] + (1.0 - beta_s[t]) * old_v
        s = s + torch.einsum("nhv,nhk->nhvk", new_v - old_v, k_s[t])
        out[t] = scale * torch.einsum("nhvk,nhk->nhv", s, q_s[t])
    output = torch.zeros(total, num_v_heads, head_v, dtype=torch.bfloat16, device=device)
    output[tok[live]] = out[live].to(torch.bfloat16)
    # An empty sequence's new state is zero (the contest's reference skips it).
    return output, torch.where((lengths > 0)[:, None, None, None], s, 0.0)
