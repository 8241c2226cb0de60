"""DSA sparse MLA attention in PyTorch: gather every token's selected slots, attend in fp32.

Shapes: q_nope [T, 16, 512], q_pe [T, 16, 64], ckv_cache [P, 64, 512], kpe_cache [P, 64, 64]
(bf16); sparse_indices [T, 2048] int32 (-1 = padding); output [T, 16, 512] bf16; lse [T, 16]
fp32 in base 2 (-inf for a token with no valid slot, whose output is zero).
"""
import math

import torch


@torch.no_grad()
def run(q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, sm_scale, output, lse):
    valid = sparse_indices >= 0
    slots = sparse_indices.clamp(min=0).long()
    kc = ckv_cache.reshape(-1, ckv_cache.shape[-1])[slots].float()  # [T, N, 512]
    kp = kpe_cache.reshape(-1, kpe_cache.shape[-1])[slots].float()
    logits = torch.baddbmm(q_pe.float() @ kp.transpose(1, 2), q_nope.float(), kc.transpose(1, 2))
    logits = (logits * sm_scale).masked_fill(~valid[:, None, :], float("-inf"))
    lse_e = torch.logsumexp(logits, dim=-1)
    p = torch.exp(logits - lse_e[..., None]).nan_to_num_(0.0)  # all-padding rows: weights 0
    output.copy_(p @ kc)
    torch.mul(lse_e, 1.0 / math.log(2.0), out=lse)
