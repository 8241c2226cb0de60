"""Realistic DSA inputs (DeepSeek-V3.2, pages of 64 tokens).

Attention: each token belongs to a sequence that owns distinct pages of the cache; its
`sparse_indices` are distinct slots (page * 64 + offset) among the tokens it may see, all of
them (in random order, -1 padded) when it sees at most 2048, else 2048 of them.

Indexer: `seq_lens` with ceil(seq_len / 64) <= max_num_pages, one row at the maximum, rows
short and long; `block_table` rows of distinct pages no other row uses.
"""
from __future__ import annotations

import torch

PAGE, TOPK = 64, 2048


def _sequence_lengths(count, gen, device, low=64, high=80_000):
    """Log-uniform context lengths: about a third of them at most 2048 tokens."""
    u = torch.rand(count, generator=gen, device=device)
    lo, hi = torch.log(torch.tensor(float(low))), torch.log(torch.tensor(float(high)))
    return torch.exp(lo + u * (hi - lo)).long()


def sparse_indices(num_tokens, num_pages, gen, device):
    # Either one sequence prefilling num_tokens consecutive tokens, or num_tokens decodes.
    one_sequence = num_tokens > 1 and bool(torch.rand(1, generator=gen, device=device) < 0.5)
    seqs = 1 if one_sequence else num_tokens
    max_tokens = (num_pages // seqs) * PAGE
    lengths = _sequence_lengths(seqs, gen, device, high=min(80_000, max_tokens)).clamp(max=max_tokens)
    pages = torch.randperm(num_pages, generator=gen, device=device)
    rows = []
    for t in range(num_tokens):
        s = 0 if one_sequence else t
        seq_len = int(lengths[s]) + (t if one_sequence else 0)
        seq_pages = pages[s * (max_tokens // PAGE):][: (seq_len + PAGE - 1) // PAGE]
        slots = (seq_pages[:, None] * PAGE + torch.arange(PAGE, device=device)).reshape(-1)[:seq_len]
        pick = torch.randperm(seq_len, generator=gen, device=device)[:TOPK]
        row = torch.full((TOPK,), -1, dtype=torch.int32, device=device)
        row[: pick.numel()] = slots[pick].to(torch.int32)
        rows.append(row)
    return torch.stack(rows)


def indexer_tables(batch, max_pages, num_pages, gen, device):
    max_tokens = max_pages * PAGE
    seq_lens = torch.randint(1, max_tokens + 1, (batch,), generator=gen, device=device)
    seq_lens[torch.randint(0, batch, (1,), generator=gen, device=device)] = int(
        torch.randint(max_tokens - PAGE + 1, max_tokens + 1, (1,), generator=gen, device=device))
    pages = torch.randperm(num_pages, generator=gen, device=device)[: batch * max_pages]
    return seq_lens.to(torch.int32), pages.view(batch, max_pages).to(torch.int32)


def synthesize_attention(axes, gen, device):
    return {"sparse_indices": sparse_indices(axes["num_tokens"], axes["num_pages"], gen, device)}


def synthesize_indexer(axes, gen, device):
    seq_lens, table = indexer_tables(axes["batch_size"], axes["max_num_pages"], axes["num_pages"], gen, device)
    return {"seq_lens": seq_lens, "block_table": table}


def pack_k_cache(k: torch.Tensor) -> torch.Tensor:
    """[P, 64, 1, 128] keys (any float dtype) -> [P, 64, 1, 132] int8 in the deep_gemm page
    layout: per page the 64 x 128 fp8 values (per-token amax / 448 scaling), then the 64
    float32 scales. This is how the contest's evaluator builds a random index cache."""
    num_pages, page_size, _, head_dim = k.shape
    scale = k.float().abs().amax(dim=3, keepdim=True).clamp(min=1e-4) / 448.0
    values = (k.float() / scale).to(torch.float8_e4m3fn)
    packed = torch.empty(num_pages, page_size * (head_dim + 4), dtype=torch.uint8, device=k.device)
    packed[:, : page_size * head_dim] = values.reshape(num_pages, -1).view(torch.uint8)
    packed[:, page_size * head_dim:] = scale.reshape(num_pages, page_size).view(torch.uint8)
    return packed.view(num_pages, page_size, 1, head_dim + 4).view(torch.int8)


def random_k_cache(shape, gen, device) -> torch.Tensor:
    num_pages, page_size, _, width = shape
    k = torch.randn(num_pages, page_size, 1, width - 4, generator=gen, device=device)
    return pack_k_cache(k.to(torch.bfloat16))
