"""DeepSeek-V3 MoE on one EP rank: no-aux group routing, fp8 block-scale experts, SwiGLU."""
import torch

BLOCK = 128
TOP_K, N_GROUP, TOPK_GROUP = 8, 8, 4


def route(routing_logits, routing_bias, routed_scaling_factor):
    """DeepSeek-V3 no-aux routing. Returns (topk_idx [T, 8] global expert ids, weights [T, 256]
    dense combination weights, zero outside each token's top 8)."""
    num_tokens, num_experts = routing_logits.shape
    s = torch.sigmoid(routing_logits.float())
    biased = s + routing_bias.float()
    grouped = biased.view(num_tokens, N_GROUP, num_experts // N_GROUP)
    group_score = grouped.topk(2, dim=2).values.sum(dim=2)  # [T, 8]
    keep_group = group_score.topk(TOPK_GROUP, dim=1).indices
    group_mask = torch.zeros_like(group_score).scatter_(1, keep_group, 1.0)
    expert_mask = group_mask.repeat_interleave(num_experts // N_GROUP, dim=1)
    pruned = biased.masked_fill(expert_mask == 0, torch.finfo(torch.float32).min)
    topk_idx = pruned.topk(TOP_K, dim=1).indices
    chosen = torch.zeros_like(s).scatter_(1, topk_idx, 1.0)
    w = s * chosen  # weights come from the unbiased sigmoid
    w = w / (w.sum(dim=1, keepdim=True) + 1e-20) * routed_scaling_factor
    return topk_idx, w


def dequant_blocks(x_fp8, scale):
    """fp8 [..., R, C] with one scale per 128 x 128 block [..., R/128, C/128] -> float32."""
    s = scale.float().repeat_interleave(BLOCK, dim=-2).repeat_interleave(BLOCK, dim=-1)
    return x_fp8.float() * s


@torch.no_grad()
def run(routing_logits, routing_bias, hidden_states, hidden_states_scale, gemm1_weights,
        gemm1_weights_scale, gemm2_weights, gemm2_weights_scale, local_expert_offset,
        routed_scaling_factor):
    """routing_logits: [T, 256] fp32; routing_bias: [256] bf16; hidden_states: [T, 7168] fp8 with
    hidden_states_scale [56, T]; gemm1_weights: [32, 4096, 7168] fp8 with scales [32, 32, 56];
    gemm2_weights: [32, 7168, 2048] fp8 with scales [32, 56, 16]. Returns output [T, 7168] bf16."""
    num_tokens, hidden = hidden_states.shape
    num_local = gemm1_weights.shape[0]
    inter = gemm2_weights.shape[2]
    topk_idx, weights = route(routing_logits, routing_bias, routed_scaling_factor)

    a_scale = hidden_states_scale.float().t().repeat_interleave(BLOCK, dim=1)  # [T, H]
    x = hidden_states.float() * a_scale
    out = torch.zeros(num_tokens, hidden, dtype=torch.float32, device=hidden_states.device)
    first = int(local_expert_offset)
    for local in range(num_local):
        expert = first + local
        tokens = (topk_idx == expert).any(dim=1).nonzero().squeeze(1)
        if tokens.numel() == 0:
            continue  # never dequantize an expert no token picked
        w13 = dequant_blocks(gemm1_weights[local], gemm1_weights_scale[local])  # [2I, H]
        w2 = dequant_blocks(gemm2_weights[local], gemm2_weights_scale[local])  # [H, I]
        g1 = x[tokens] @ w13.t()
        up, gate = g1[:, :inter], g1[:, inter:]
        c = gate / (1.0 + torch.exp(-gate)) * up  # silu of the second half times the first
        o = c @ w2.t()
        out.index_add_(0, tokens, o * weights[tokens, expert, None])
    return out.to(torch.bfloat16)
