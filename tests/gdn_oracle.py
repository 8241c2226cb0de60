"""The gated delta rule in float64, one token at a time: the oracle the GDN kernels are
checked against (readable rather than fast; the definitions' references are the fast ones)."""
import torch
import torch.nn.functional as F


def gdn_oracle(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale):
    """Packed form: q, k [T, HQK, K]; v [T, H, V]; a, b [T, H]; state [N, H, V, K] or None.
    Returns output [T, H, V] and new_state [N, H, V, K], float64."""
    f = torch.float64
    num_seqs, heads = cu_seqlens.numel() - 1, v.shape[1]
    group = heads // q.shape[1]
    scale = scale or q.shape[-1] ** -0.5
    q, k = q.to(f).repeat_interleave(group, 1), k.to(f).repeat_interleave(group, 1)
    g = torch.exp(-torch.exp(A_log.to(f)) * F.softplus(a.to(f) + dt_bias.to(f)))  # [T, H]
    beta = torch.sigmoid(b.to(f))
    out = torch.zeros(v.shape, dtype=f, device=v.device)
    new_state = torch.zeros(num_seqs, heads, v.shape[2], q.shape[2], dtype=f, device=v.device)
    for n in range(num_seqs):
        bos, eos = int(cu_seqlens[n]), int(cu_seqlens[n + 1])
        if bos == eos:
            continue  # an empty sequence's new state is zero, as in the contest's reference
        s = state[n].to(f).clone() if state is not None else new_state[n]
        for t in range(bos, eos):
            s = g[t, :, None, None] * s  # [H, V, K]
            old = torch.einsum("hvk,hk->hv", s, k[t])
            s = s + torch.einsum("hv,hk->hvk", beta[t, :, None] * (v[t].to(f) - old), k[t])
            out[t] = scale * torch.einsum("hvk,hk->hv", s, q[t])
        new_state[n] = s
    return out, new_state


def decode_oracle(q, k, v, state, A_log, a, dt_bias, b, scale):
    """Decode as prefill of one token per sequence."""
    batch = q.shape[0]
    cu = torch.arange(batch + 1)
    out, s = gdn_oracle(q[:, 0], k[:, 0], v[:, 0], state, A_log, a[:, 0], dt_bias, b[:, 0], cu, scale)
    return out[:, None], s


def on(inputs: dict, device) -> dict:
    """Inputs synthesized on the CPU (seeded generators are per device), moved to `device`."""
    return {n: t.to(device) if hasattr(t, "to") else t for n, t in inputs.items()}
