"""DSA sparse MLA attention: each token attends over its own set of selected KV slots."""
import math

import torch


@torch.no_grad()
def run(q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, sm_scale):
    """q_nope: [T, 16, 512], q_pe: [T, 16, 64], ckv_cache: [P, 64, 512], kpe_cache: [P, 64, 64]
    (bf16); sparse_indices: [T, 2048] int32 slots page * 64 + offset, -1 = padding.
    Returns output [T, 16, 512] bf16 and the base-2 lse [T, 16] fp32 (-inf, with a zero output,
    for a token whose slots are all padding)."""
    head_ckv, head_kpe = ckv_cache.shape[-1], kpe_cache.shape[-1]
    ckv = ckv_cache.reshape(-1, head_ckv).float()
    kpe = kpe_cache.reshape(-1, head_kpe).float()
    valid = sparse_indices != -1  # [T, N]
    slots = sparse_indices.long().clamp(min=0)
    kc, kp = ckv[slots], kpe[slots]  # [T, N, 512], [T, N, 64]

    logits = torch.einsum("thd,tnd->thn", q_nope.float(), kc)
    logits = (logits + torch.einsum("thd,tnd->thn", q_pe.float(), kp)) * sm_scale
    logits = logits.masked_fill(~valid[:, None, :], float("-inf"))
    lse = torch.logsumexp(logits, dim=-1)  # natural log, [T, H]
    # exp(logit - lse) is NaN on an all-padding row (-inf - -inf): those weights are zero.
    p = torch.where(valid[:, None, :], torch.exp(logits - lse[..., None]), 0.0)
    out = torch.einsum("thn,tnd->thd", p, kc)
    return out.to(torch.bfloat16), lse / math.log(2.0)
