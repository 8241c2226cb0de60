"""Realistic GDN inputs (Qwen3-Next linear attention, TP=4: 4 q/k heads, 8 v heads, d=128).

q and k are L2-normalized per head, as the model feeds them; A_log and dt_bias follow the
model's initialization ranges, which give per-step decays g spread over (0, 1); the initial
state is what the recurrence itself produces over a prefix of tokens, not white noise.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

QK_HEADS, V_HEADS, D = 4, 8, 128
STATE_PREFIX_TOKENS = 32


def _normalized(shape, gen, device):
    x = torch.randn(*shape, D, generator=gen, device=device)
    return F.normalize(x, dim=-1).to(torch.bfloat16)


def gate_params(gen, device):
    """A in (1, 16) and dt in (1e-3, 1e-1) log-uniform, dt_bias = softplus^-1(dt)."""
    a_rate = torch.empty(V_HEADS, device=device).uniform_(1.0, 16.0, generator=gen)
    log_dt = torch.empty(V_HEADS, device=device).uniform_(math.log(1e-3), math.log(1e-1), generator=gen)
    dt = log_dt.exp()
    dt_bias = dt + torch.log(-torch.expm1(-dt))
    return a_rate.log(), dt_bias


def token_inputs(num_tokens, gen, device):
    return {
        "q": _normalized((num_tokens, QK_HEADS), gen, device),
        "k": _normalized((num_tokens, QK_HEADS), gen, device),
        "v": torch.randn(num_tokens, V_HEADS, D, generator=gen, device=device).to(torch.bfloat16),
        "a": torch.randn(num_tokens, V_HEADS, generator=gen, device=device).to(torch.bfloat16),
        "b": torch.randn(num_tokens, V_HEADS, generator=gen, device=device).to(torch.bfloat16),
    }


def prefix_state(num_seqs, A_log, dt_bias, gen, device):
    """k-last states [N, 8, 128, 128] after running the gated delta rule over a random prefix."""
    s = torch.zeros(num_seqs, V_HEADS, D, D, device=device)
    for _ in range(STATE_PREFIX_TOKENS):
        x = token_inputs(num_seqs, gen, device)
        g = torch.exp(-A_log.exp() * F.softplus(x["a"].float() + dt_bias))
        beta = torch.sigmoid(x["b"].float())
        k = x["k"].float().repeat_interleave(V_HEADS // QK_HEADS, dim=1)
        s = g[..., None, None] * s
        err = x["v"].float() - torch.einsum("nhvk,nhk->nhv", s, k)
        s = s + torch.einsum("nhv,nhk->nhvk", beta[..., None] * err, k)
    return s.contiguous()


def split_lengths(total, parts, gen, device):
    """cu_seqlens [parts + 1] int64: `parts` lengths >= 1 summing to `total`, uneven like a real
    prefill batch (a Dirichlet-like split)."""
    w = -torch.rand(parts, generator=gen, device=device).clamp_min(1e-6).log()
    extra = total - parts
    lengths = torch.floor(w / w.sum() * extra).long() + 1
    lengths[0] += total - int(lengths.sum())
    cu = torch.zeros(parts + 1, dtype=torch.int64, device=device)
    cu[1:] = lengths.cumsum(0)
    return cu


def synthesize_decode(axes, gen, device):
    A_log, dt_bias = gate_params(gen, device)
    batch = axes["batch_size"]
    out = {name: t.unsqueeze(1) for name, t in token_inputs(batch, gen, device).items()}  # [B, 1, ...]
    out["state"] = prefix_state(batch, A_log, dt_bias, gen, device)
    out["A_log"], out["dt_bias"] = A_log, dt_bias
    return out


def synthesize_prefill(axes, gen, device):
    A_log, dt_bias = gate_params(gen, device)
    total, seqs = axes["total_seq_len"], axes["num_seqs"]
    out = token_inputs(total, gen, device)
    out["state"] = prefix_state(seqs, A_log, dt_bias, gen, device)
    out["cu_seqlens"] = split_lengths(total, seqs, gen, device)
    out["A_log"], out["dt_bias"] = A_log, dt_bias
    return out
