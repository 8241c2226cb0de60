"""DeepSeek-V3 FP8 block-scale MoE (one EP rank) in PyTorch.

Routing is vectorized over tokens; then the (token, local expert) pairs are sorted by expert
and each expert with tokens runs GEMM1 -> SwiGLU -> GEMM2 on its rows in bf16, its weights
dequantized on the fly (experts no token picked are never touched).

Shapes: routing_logits [T, 256] fp32; routing_bias [256] bf16; hidden_states [T, 7168] fp8 with
scales [56, T]; gemm1_weights [32, 4096, 7168] fp8 with scales [32, 32, 56]; gemm2_weights
[32, 7168, 2048] fp8 with scales [32, 56, 16]; output [T, 7168] bf16.
"""
import torch

BLOCK = 128


def _dequant(w, s):
    """fp8 [R, C] with [R/128, C/128] block scales -> bf16."""
    r, c = w.shape
    x = w.view(r // BLOCK, BLOCK, c // BLOCK, BLOCK).float() * s[:, None, :, None]
    return x.view(r, c).to(torch.bfloat16)


@torch.no_grad()
def run(routing_logits, routing_bias, hidden_states, hidden_states_scale, gemm1_weights,
        gemm1_weights_scale, gemm2_weights, gemm2_weights_scale, local_expert_offset,
        routed_scaling_factor, output):
    tokens, hidden = hidden_states.shape
    num_local, inter = gemm1_weights.shape[0], gemm2_weights.shape[2]

    # No-aux routing: groups of 32 scored by their top-2 biased scores, best 4 groups kept,
    # best 8 biased scores among them chosen, weighted by the unbiased sigmoid.
    s = torch.sigmoid(routing_logits.float())
    biased = s + routing_bias.float()
    group_score = biased.view(tokens, 8, 32).topk(2, dim=-1).values.sum(-1)
    kept = torch.zeros_like(group_score).scatter_(1, group_score.topk(4, dim=1).indices, 1.0)
    masked = biased.masked_fill(kept.repeat_interleave(32, dim=1) == 0, float("-inf"))
    experts = masked.topk(8, dim=1).indices  # [T, 8]
    w = s.gather(1, experts)
    w = w / (w.sum(dim=1, keepdim=True) + 1e-20) * routed_scaling_factor

    local = experts - local_expert_offset
    mine = (local >= 0) & (local < num_local)
    token_of = torch.arange(tokens, device=local.device)[:, None].expand_as(local)[mine]
    expert_of, weight_of = local[mine], w[mine]
    order = torch.argsort(expert_of, stable=True)
    token_of, expert_of, weight_of = token_of[order], expert_of[order], weight_of[order]
    counts = torch.bincount(expert_of, minlength=num_local).tolist()  # host sync: baseline

    scale = hidden_states_scale.t().repeat_interleave(BLOCK, dim=1)
    x = (hidden_states.float() * scale).to(torch.bfloat16)
    acc = torch.zeros(tokens, hidden, dtype=torch.float32, device=x.device)
    start = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        rows = token_of[start:start + n]
        g1 = x[rows] @ _dequant(gemm1_weights[e], gemm1_weights_scale[e]).t()  # [n, 2I]
        up, gate = g1[:, :inter].float(), g1[:, inter:].float()
        c = (torch.nn.functional.silu(gate) * up).to(torch.bfloat16)
        o = c @ _dequant(gemm2_weights[e], gemm2_weights_scale[e]).t()
        # Within one expert every token appears once, so this index_add has no colliding rows.
        acc.index_add_(0, rows, o.float() * weight_of[start:start + n, None])
        start += n
    output.copy_(acc)
