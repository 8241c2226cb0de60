"""DSA top-k indexer: fp8 scores over a paged K cache and the best 2048 slots per row, in two
launches: the CUDA solution's twin (the same answers as a set; this one lists them best
first).

Shapes: q_index_fp8 [B, 64, 128] fp8 e4m3; k_index_cache_fp8 [P, 64, 1, 132] int8 in the
deep_gemm page layout (a page is its 64 x 128 fp8 values, then its 64 fp32 scales); weights
[B, 64] fp32; seq_lens [B] int32; block_table [B, M] int32; topk_indices [B, 2048] int32,
slots page * 64 + offset, -1 padded.

score[b, t] = sum_h weights[b, h] * relu(scale_t * (q[b, h] . k_t)), over t < seq_len.

A row of at most 2048 tokens keeps all of them, so it needs no score: `select_kernel` writes
its slots in position order. A longer row is split over `score_kernel`'s second grid axis into
chunks of CHUNK_PAGES pages; each program scores its chunk with fp8 tensor-core dots ([64
heads, 128] x [128, STEP_PAGES * 64 tokens]) into an fp32 workspace allocated for the call.
Then `select_kernel`, one program per row, ranks the row's scores, best first with ties to
the earlier token, and writes the 2048 best in rank order (`_rank_and_write`). Nothing is
shared between calls and no program waits on another. (Selecting with Triton's bitonic
tl.sort / tl.topk took 85-150 us on the H200: docs/perf-notes.md.)

Page numbers are clamped to [0, P) as the reference does; `fibkit.ops` rejects bad pages
and seq_lens before they get here.
"""
import torch
import triton
import triton.language as tl

HEADS, DIM, PAGE, TOPK = 64, 128, 64, 2048
PAGE_WORDS = PAGE * (DIM + 4) // 4  # a page in fp32 words: 8192 value bytes, then 64 scales


@triton.jit
def _page_of(table_ptr, b, pos, live, max_pages, num_pages, PAGE: tl.constexpr):
    page = tl.load(table_ptr + b * max_pages + pos // PAGE, mask=live, other=0)
    return tl.minimum(tl.maximum(page, 0), num_pages - 1)


@triton.jit
def _score_chunk(q_ptr, k_fp8_ptr, k_f32_ptr, w_ptr, table_ptr, scores_ptr, b, first_page,
                 n, max_pages, num_pages, CHUNK_PAGES: tl.constexpr, STEP_PAGES: tl.constexpr,
                 NB: tl.constexpr, H: tl.constexpr, D: tl.constexpr, PAGE: tl.constexpr,
                 PAGE_WORDS: tl.constexpr):
    heads = tl.arange(0, H)
    dims = tl.arange(0, D)
    q = tl.load(q_ptr + (b * H + heads[:, None]) * D + dims[None, :])  # fp8 [H, D]
    w = tl.load(w_ptr + b * H + heads)
    last_page = tl.minimum(first_page + CHUNK_PAGES, (n + PAGE - 1) // PAGE)
    for page0 in range(first_page, last_page, STEP_PAGES):
        pos = page0 * PAGE + tl.arange(0, STEP_PAGES * PAGE)
        live = pos < n
        page = _page_of(table_ptr, b, pos, live, max_pages, num_pages, PAGE).to(tl.int64)
        row = page * (PAGE_WORDS * 4) + (pos % PAGE) * D  # byte offset of the token's values
        k = tl.load(k_fp8_ptr + row[:, None] + dims[None, :], mask=live[:, None], other=0.0)
        scale = tl.load(k_f32_ptr + page * PAGE_WORDS + (PAGE * D // 4) + pos % PAGE,
                        mask=live, other=0.0)
        logits = tl.dot(q, tl.trans(k)) * scale[None, :]  # [H, tokens] fp32
        score = tl.sum(tl.maximum(logits, 0.0) * w[:, None], axis=0)
        tl.store(scores_ptr + b * NB + pos, score, mask=live)


@triton.jit
def _rank_and_write(scores_ptr, work_ptr, table_ptr, out_ptr, b, n, max_pages, num_pages,
                    NB: tl.constexpr, K: tl.constexpr, PAGE: tl.constexpr,
                    BUCKETS: tl.constexpr):
    """Rank the row's n scores (best first, ties to the earlier token) and write the K best.

    rank = (tokens in better buckets) + (better tokens in the same bucket). The buckets split
    [min, max] of the row's scores evenly (2 NB of them for at most NB tokens: a few tokens
    each where the scores are densest; rounding keeps the bucket monotone in the score).
    Bucket sizes come from atomic counts, starts from their prefix sum; each token is listed
    at its bucket's start plus the place its atomic returned, and compares itself with its
    bucket's other members only. The list's order depends on the atomics, the ranks do not,
    so the output is deterministic. (The scratch lives in global memory: Triton's on-chip
    tl.histogram + tl.gather version of this took ~100 us on the H200.)"""
    pos = tl.arange(0, NB)
    live = pos < n
    score = tl.load(scores_ptr + b * NB + pos, mask=live, other=0.0, cache_modifier=".cg")
    bits = score.to(tl.int32, bitcast=True)
    # One int64 per token in the ranking's total order: the score's order-preserving int32
    # image, then the earlier token.
    key = ((bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(tl.int64) << 32) | (NB - 1 - pos).to(tl.int64)
    smax = tl.max(tl.where(live, score, float("-inf")), axis=0)
    smin = tl.min(tl.where(live, score, float("inf")), axis=0)
    per_bucket = (BUCKETS - 1) / tl.maximum(smax - smin, 1e-30)
    bucket = tl.minimum((smax - score) * per_bucket, BUCKETS - 1).to(tl.int32)  # 0: the best
    counts_ptr = work_ptr + b * (2 * BUCKETS + 2 * NB)
    starts_ptr = counts_ptr + BUCKETS
    list_ptr = (starts_ptr + BUCKETS).to(tl.pointer_type(tl.int64), bitcast=True)
    bins = tl.arange(0, BUCKETS)
    tl.store(counts_ptr + bins, 0)
    tl.debug_barrier()
    place = tl.atomic_add(counts_ptr + bucket, 1, mask=live, sem="relaxed")
    tl.debug_barrier()
    counts = tl.load(counts_ptr + bins, cache_modifier=".cg")
    tl.store(starts_ptr + bins, tl.cumsum(counts, axis=0) - counts)
    tl.debug_barrier()
    base = tl.load(starts_ptr + bucket, mask=live, other=K, cache_modifier=".cg")
    size = tl.load(counts_ptr + bucket, mask=live, other=0, cache_modifier=".cg")
    hopeful = live & (base < K)  # behind K tokens of better buckets: cannot make it
    tl.store(list_ptr + base + place, key, mask=hopeful)
    tl.debug_barrier()
    rank = base
    if smax == smin:  # all scores equal: position order, without walking one bucket of n
        rank = pos
    else:
        for j in range(0, tl.max(tl.where(hopeful, size, 0), axis=0)):
            member = hopeful & (j < size)
            other = tl.load(list_ptr + base + j, mask=member, other=0, cache_modifier=".cg")
            rank += (member & (other > key)).to(tl.int32)
    top = live & (rank < K)
    page = _page_of(table_ptr, b, pos, top, max_pages, num_pages, PAGE)
    tl.store(out_ptr + b * K + rank, page * PAGE + pos % PAGE, mask=top)


@triton.jit
def score_kernel(q_ptr, k_fp8_ptr, k_f32_ptr, w_ptr, seq_lens_ptr, table_ptr, scores_ptr,
                 max_pages, num_pages, CHUNK_PAGES: tl.constexpr, STEP_PAGES: tl.constexpr,
                 NB: tl.constexpr, K: tl.constexpr, H: tl.constexpr, D: tl.constexpr,
                 PAGE: tl.constexpr, PAGE_WORDS: tl.constexpr):
    b = tl.program_id(0)
    n = tl.minimum(tl.maximum(tl.load(seq_lens_ptr + b), 0), max_pages * PAGE)
    if n > K:
        _score_chunk(q_ptr, k_fp8_ptr, k_f32_ptr, w_ptr, table_ptr, scores_ptr, b,
                     tl.program_id(1) * CHUNK_PAGES, n, max_pages, num_pages, CHUNK_PAGES,
                     STEP_PAGES, NB, H, D, PAGE, PAGE_WORDS)


@triton.jit
def select_kernel(scores_ptr, work_ptr, seq_lens_ptr, table_ptr, out_ptr, max_pages, num_pages,
                  SCORE: tl.constexpr, NB: tl.constexpr, K: tl.constexpr, PAGE: tl.constexpr):
    b = tl.program_id(0)
    n = tl.minimum(tl.maximum(tl.load(seq_lens_ptr + b), 0), max_pages * PAGE)
    if (not SCORE) or n <= K:  # every token is in the answer: its slots, in position order
        pos = tl.arange(0, K)
        live = pos < n
        page = _page_of(table_ptr, b, pos, live, max_pages, num_pages, PAGE)
        tl.store(out_ptr + b * K + pos, tl.where(live, page * PAGE + pos % PAGE, -1))
    else:
        _rank_and_write(scores_ptr, work_ptr, table_ptr, out_ptr, b, n, max_pages, num_pages,
                        NB, K, PAGE, 2 * NB)


# chunk_pages: pages scored per program; step_pages: pages per tensor-core dot.
DEFAULT_CONFIG = dict(chunk_pages=2, step_pages=2, num_warps=8)


def run(q_index_fp8, k_index_cache_fp8, weights, seq_lens, block_table, topk_indices):
    """The contest entry point (destination-passing): writes topk_indices."""
    launch(q_index_fp8, k_index_cache_fp8, weights, seq_lens, block_table, topk_indices)


def launch(q_index_fp8, k_index_cache_fp8, weights, seq_lens, block_table, topk_indices,
           config=None):
    cfg = dict(DEFAULT_CONFIG, **(config or {}))
    batch, max_pages = block_table.shape
    if batch == 0:
        return
    num_pages = k_index_cache_fp8.shape[0]
    # Decided by shapes alone (no host synchronization): if no row can pass 2048 tokens, no
    # row needs scoring, and one program per row writes its slots.
    score = max_pages * PAGE > TOPK
    chunks = triton.cdiv(max_pages, cfg["chunk_pages"]) if score else 1
    nb = triton.next_power_of_2(max_pages * PAGE)
    scores = torch.empty(batch, nb if score else 1, dtype=torch.float32, device=weights.device)
    # the ranking's scratch per row: counts and starts of 2 nb buckets, nb int64 list entries;
    # the kernel initializes what it reads
    work = torch.empty(batch, 6 * nb if score else 1, dtype=torch.int32, device=weights.device)
    k_fp8 = k_index_cache_fp8.view(torch.float8_e4m3fn)
    k_f32 = k_index_cache_fp8.view(num_pages, -1).view(torch.float32)
    if score:
        score_kernel[(batch, chunks)](
            q_index_fp8, k_fp8, k_f32, weights, seq_lens, block_table, scores, max_pages,
            num_pages, CHUNK_PAGES=cfg["chunk_pages"], STEP_PAGES=cfg["step_pages"], NB=nb,
            K=TOPK, H=HEADS, D=DIM, PAGE=PAGE, PAGE_WORDS=PAGE_WORDS, num_warps=cfg["num_warps"])
    select_kernel[(batch,)](scores, work, seq_lens, block_table, topk_indices, max_pages,
                            num_pages, SCORE=score, NB=nb, K=TOPK, PAGE=PAGE,
                            num_warps=cfg["num_warps"])
