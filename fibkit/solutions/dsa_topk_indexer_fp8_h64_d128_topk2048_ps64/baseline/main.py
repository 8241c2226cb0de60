"""DSA top-k indexer in PyTorch: gather each row's pages (only those), dequantize, score, top-k.

Shapes: q_index_fp8 [B, 64, 128] fp8; k_index_cache_fp8 [P, 64, 1, 132] int8 (per page: 64 x
128 fp8 values, then 64 fp32 scales); weights [B, 64] fp32; seq_lens [B] int32; block_table
[B, M] int32; topk_indices [B, 2048] int32, best first, -1 padded.
"""
import torch

TOPK = 2048


@torch.no_grad()
def run(q_index_fp8, k_index_cache_fp8, weights, seq_lens, block_table, topk_indices):
    batch, max_pages = block_table.shape
    num_pages, page, _, width = k_index_cache_fp8.shape
    dim = width - 4
    pages = block_table.long().clamp(0, num_pages - 1)
    raw = k_index_cache_fp8.view(torch.uint8).reshape(num_pages, page * width)[pages]  # [B, M, 8448]
    values = raw[..., : page * dim].contiguous().view(torch.float8_e4m3fn).float()
    scales = raw[..., page * dim:].contiguous().view(torch.float32)  # [B, M, 64]
    keys = values.view(batch, max_pages, page, dim) * scales[..., None]
    keys = keys.view(batch, max_pages * page, dim)

    scores = torch.relu(torch.bmm(q_index_fp8.float(), keys.transpose(1, 2)))  # [B, 64, N]
    scores = torch.bmm(weights.float().unsqueeze(1), scores).squeeze(1)  # [B, N]
    position = torch.arange(max_pages * page, device=scores.device)
    in_seq = position[None] < seq_lens[:, None]
    scores.masked_fill_(~in_seq, float("-inf"))

    k = min(TOPK, max_pages * page)
    pos = torch.topk(scores, k, dim=1).indices  # sorted: best first
    slots = pages.gather(1, pos // page) * page + pos % page
    topk_indices[:, :k] = torch.where(in_seq.gather(1, pos), slots, -1)
    topk_indices[:, k:] = -1
