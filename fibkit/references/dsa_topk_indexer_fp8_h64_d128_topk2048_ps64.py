"""DSA lightning indexer: fp8 scores against a paged K cache, then the top 2048 slots per row."""
import torch

TOPK = 2048


def dequant_k_cache(k_index_cache_fp8):
    """[P, 64, 1, 132] int8 in the deep_gemm page layout -> [P, 64, 128] float32.

    A page's bytes are its 64 x 128 fp8 values, then its 64 float32 scales; the [64, 1, 132]
    view does not line up with tokens."""
    num_pages, page_size, _, width = k_index_cache_fp8.shape
    head_dim = width - 4
    flat = k_index_cache_fp8.view(torch.uint8).reshape(num_pages, page_size * width)
    values = flat[:, : page_size * head_dim].contiguous().view(torch.float8_e4m3fn).float()
    scales = flat[:, page_size * head_dim :].contiguous().view(torch.float32)
    return values.view(num_pages, page_size, head_dim) * scales[:, :, None]


@torch.no_grad()
def run(q_index_fp8, k_index_cache_fp8, weights, seq_lens, block_table):
    """q_index_fp8: [B, 64, 128] fp8; k_index_cache_fp8: [P, 64, 1, 132] int8; weights: [B, 64]
    fp32; seq_lens: [B] int32; block_table: [B, M] int32. Returns topk_indices [B, 2048] int32:
    the slots page * 64 + offset of the min(2048, seq_len) best-scoring tokens, -1 padded."""
    batch, max_pages = block_table.shape
    num_pages, page_size = k_index_cache_fp8.shape[:2]
    keys = dequant_k_cache(k_index_cache_fp8)
    pages = block_table.long().clamp(0, num_pages - 1)  # pages past seq_len are masked below
    k_seq = keys[pages].reshape(batch, max_pages * page_size, -1)  # [B, M*64, 128]

    per_head = torch.relu(torch.einsum("bhd,bnd->bhn", q_index_fp8.float(), k_seq))
    scores = torch.einsum("bhn,bh->bn", per_head, weights.float())
    position = torch.arange(max_pages * page_size, device=scores.device)
    in_seq = position[None, :] < seq_lens.long()[:, None]
    scores = scores.masked_fill(~in_seq, float("-inf"))

    k = min(TOPK, max_pages * page_size)
    _, pos = torch.topk(scores, k, dim=1)
    slots = pages.gather(1, pos // page_size) * page_size + pos % page_size
    slots = torch.where(in_seq.gather(1, pos), slots, -1)
    out = torch.full((batch, TOPK), -1, dtype=torch.int32, device=scores.device)
    out[:, :k] = slots.to(torch.int32)
    return out
