"""Expert-parallel DeepSeek-V3 MoE on torch.distributed, one process per rank.

Every rank holds the same tokens and routing inputs and the weights of its own experts,
experts [rank * E_rank, (rank + 1) * E_rank) of all E. Routing is computed identically on every
rank over all E experts. Each rank runs the single-rank MoE (the definition's operator, which
takes a local_expert_offset) over its experts, in calls of `experts_per_call` experts (32, the
definition's local count: with fewer ranks than 8 a rank makes several calls), and the
partial outputs are summed across ranks with one all-reduce.

Partials are summed in fp32 and rounded to bf16 once at the end: an all-reduce in bf16 would
round at every step of the reduction.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.distributed as dist

EXPERTS_PER_CALL = 32


def ep_moe(routing_logits, routing_bias, hidden_states, hidden_states_scale, gemm1_weights,
           gemm1_weights_scale, gemm2_weights, gemm2_weights_scale,
           routed_scaling_factor: float, moe_fn: Optional[Callable] = None,
           experts_per_call: int = EXPERTS_PER_CALL, group=None) -> torch.Tensor:
    """This rank's experts' contribution, all-reduced into the full MoE output [T, H] bf16.

    gemm1_weights [E_rank, 2I, H] fp8 (and the other weight tensors) hold this rank's experts
    only; routing_logits [T, E] covers all of them. moe_fn(routing_logits, routing_bias,
    hidden_states, hidden_states_scale, w1, s1, w2, s2, local_expert_offset,
    routed_scaling_factor) -> [T, H] is the single-rank MoE (default: fibkit.ops's)."""
    if moe_fn is None:
        from fibkit.ops import moe_fp8_block_scale as moe_fn
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    per_rank = gemm1_weights.shape[0]
    total_experts = routing_logits.shape[1]
    if per_rank * world != total_experts:
        raise ValueError(f"ep_moe: {world} ranks x {per_rank} local experts != {total_experts} "
                         f"experts in routing_logits")
    if per_rank % experts_per_call:
        raise ValueError(f"ep_moe: {per_rank} local experts is not a multiple of {experts_per_call}")
    total = torch.zeros(hidden_states.shape, dtype=torch.float32, device=hidden_states.device)
    for start in range(0, per_rank, experts_per_call):
        part = slice(start, start + experts_per_call)
        total += moe_fn(routing_logits, routing_bias, hidden_states, hidden_states_scale,
                        gemm1_weights[part], gemm1_weights_scale[part], gemm2_weights[part],
                        gemm2_weights_scale[part], rank * per_rank + start,
                        routed_scaling_factor).float()
    dist.all_reduce(total, group=group)
    return total.to(torch.bfloat16)
