"""Realistic DeepSeek-V3 routing inputs: gate logits whose experts are unevenly popular (a few
hot experts, as in a trained router), and a small correction bias in bf16."""
from __future__ import annotations

import torch

NUM_EXPERTS = 256


def synthesize(axes, gen, device):
    tokens = axes["seq_len"]
    popularity = torch.randn(NUM_EXPERTS, generator=gen, device=device) * 0.8
    hot = torch.randperm(NUM_EXPERTS, generator=gen, device=device)[:8]
    popularity[hot] += 2.0
    logits = torch.randn(tokens, NUM_EXPERTS, generator=gen, device=device) * 1.5 + popularity - 2.0
    # The no-aux correction bias leans against popularity without cancelling it.
    bias = (-0.02 * popularity + 0.01 * torch.randn(NUM_EXPERTS, generator=gen, device=device))
    return {"routing_logits": logits.float(), "routing_bias": bias.to(torch.bfloat16)}
