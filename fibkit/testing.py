"""Test support, one home for every test, benchmark and check script: the float64 oracles, the
input builders, poisoned outputs, and the comparison by the catalog's tolerance rule.

Inputs: `synthesized` gives a definition's realistic inputs (the catalog's synthesis, seeded on
the CPU so every device sees the same values); `official_inputs` a workload's inputs exactly as
the evaluator builds them; the per-definition builders below make the edge cases the kernel
tests need (padding, empty rows, chosen routing). Oracles compute in float64, one token or
expert at a time where that reads most plainly: slow, and the thing the kernels and the
references are checked against.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence

import torch
import torch.nn.functional as F

from fibkit import catalog
from fibkit.evaluate import judge as judging
from fibkit.evaluate.inputs import make_inputs, poisoned_outputs

FP8 = torch.float8_e4m3fn
GDN_PREFILL = "gdn_prefill_qk4_v8_d128_k_last"
GDN_DECODE = "gdn_decode_qk4_v8_d128_k_last"
GDN_INPUTS = ["q", "k", "v", "state", "A_log", "a", "dt_bias", "b"]


# ----------------------------------------------------------------------------- comparison

def assert_judged_close(name: str, got: torch.Tensor, want: torch.Tensor, what: str = "output"):
    """`got` against a reference's or an oracle's `want` by the definition's rule in the catalog,
    as the contest judges (float32, the rule's share of elements, any inf or NaN fails)."""
    rule = catalog.SPECS[catalog.resolve(name).name].judge
    verdict = judging.compare(got, want, rule.atol, rule.rtol, rule.required_ratio, what)
    assert verdict.passed, verdict.message


def max_error_of_max(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want|: the accuracy figure the perf notes report."""
    want = want.double()
    return ((got.double() - want).abs().max() / want.abs().max().clamp_min(1e-300)).item()


# ----------------------------------------------------------------------------- inputs

def on(tensors: Dict[str, Any], device) -> Dict[str, Any]:
    return {n: t.to(device) if isinstance(t, torch.Tensor) else t for n, t in tensors.items()}


def synthesized(name: str, axes: Dict[str, int], seed: int, device) -> Dict[str, torch.Tensor]:
    """The catalog's realistic synthesis of a definition's inputs, on `device`."""
    spec = catalog.resolve(name)
    return on(spec.synthesize(axes, torch.Generator().manual_seed(seed), "cpu"), device)


def official_inputs(name: str, wl, seed: int = 0, trial: int = 0, device="cuda") -> List[Any]:
    """Workload `wl`'s inputs in definition order, as `fibkit check` and `bench` build them."""
    from fibkit.evaluate.workloads import WorkloadSource

    spec = catalog.resolve(name)
    definition = catalog.load_definition(spec.name)
    source = WorkloadSource(spec, None, seed)
    return make_inputs(definition, wl, source.blobs(wl, definition), seed=seed, trial=trial,
                       device=device)


def poisoned(name: str, axes: Dict[str, int], device) -> List[torch.Tensor]:
    """Output buffers of a call with these axes, filled with what no correct kernel leaves."""
    return poisoned_outputs(catalog.load_definition(catalog.resolve(name).name), axes, device)


def gdn_decode_inputs(batch: int, device, seed: int, with_state=True, scale=0.0) -> List[Any]:
    x = synthesized(GDN_DECODE, {"batch_size": batch}, seed, device)
    args = [x[n] for n in GDN_INPUTS] + [scale]
    if not with_state:
        args[3] = None
    return args


def gdn_prefill_inputs(lengths: Sequence[int], device, seed: int, with_state=True,
                       scale=0.0) -> List[Any]:
    """Packed sequences of the given lengths (zeros allowed)."""
    x = synthesized(GDN_PREFILL, {"total_seq_len": sum(lengths), "num_seqs": len(lengths)}, seed, device)
    cu = torch.tensor([0, *lengths], device=device).cumsum(0)
    args = [x[n] for n in GDN_INPUTS] + [cu, scale]
    if not with_state:
        args[3] = None
    return args


def dsa_attention_inputs(tokens: int, pages: int, device, seed: int) -> List[Any]:
    """Random q and cache; each row's 2048 slots distinct, 30% padding anywhere, row 1 one valid
    slot, row 2 padding only (nothing to attend to: lse -inf, output 0)."""
    g = torch.Generator().manual_seed(seed)
    q_nope = torch.randn(tokens, 16, 512, generator=g).bfloat16()
    q_pe = torch.randn(tokens, 16, 64, generator=g).bfloat16()
    ckv = torch.randn(pages, 64, 512, generator=g).bfloat16()
    kpe = torch.randn(pages, 64, 64, generator=g).bfloat16()
    idx = torch.stack([torch.randperm(pages * 64, generator=g)[:2048] for _ in range(tokens)]).int()
    idx[torch.rand(tokens, 2048, generator=g) < 0.3] = -1
    if tokens > 1:
        idx[1] = -1
        idx[1, 1500] = 7
    if tokens > 2:
        idx[2] = -1
    args = [q_nope, q_pe, ckv, kpe, idx, 1 / math.sqrt(192)]
    return [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]


def dsa_indexer_inputs(seq_lens: Sequence[int], max_pages: int, num_pages: int, device,
                       seed: int) -> List[torch.Tensor]:
    """q fp8, a packed fp8 K cache of normal keys, weights, the rows' lengths and distinct pages."""
    from fibkit.dataset.dsa import random_k_cache

    g = torch.Generator().manual_seed(seed)
    batch = len(seq_lens)
    q = torch.randn(batch, 64, 128, generator=g).to(FP8)
    k_cache = random_k_cache((num_pages, 64, 1, 132), g, "cpu")
    weights = torch.randn(batch, 64, generator=g)
    table = torch.randperm(num_pages, generator=g)[: batch * max_pages].view(batch, max_pages).int()
    lens = torch.tensor(list(seq_lens), dtype=torch.int32)
    return [t.to(device) for t in (q, k_cache, weights, lens, table)]


MOE_SCALING = 2.5  # the official workloads' routed_scaling_factor


def moe_inputs(tokens: int, hidden: int, inter: int, offset: int, device, seed: int,
               routing: str = "random") -> List[Any]:
    """Contest-like random tensors for the 32 local experts at `offset` (fp8 from a clamped
    normal, scales of either sign). routing: "random"; "none" (no token picks a local expert);
    "one_expert" (every token picks local expert 3); "hot" (local experts 0-1 popular)."""
    g = torch.Generator(device=device).manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device=device)  # noqa: E731
    fp8 = lambda *s: r(*s).clamp(-2, 2).to(FP8)  # noqa: E731
    logits = r(tokens, 256) * 2
    local = slice(offset, offset + 32)
    if routing == "none":
        logits[:, local] = -30.0
    elif routing == "one_expert":
        logits[:, offset + 3] = 30.0
    elif routing == "hot":
        logits[:, offset:offset + 2] += 4.0
    bias = (r(256) * 0.05).bfloat16()
    weights = [fp8(32, 2 * inter, hidden), r(32, 2 * inter // 128, hidden // 128),
               fp8(32, hidden, inter), r(32, hidden // 128, inter // 128)]
    return [logits, bias, fp8(tokens, hidden), r(hidden // 128, tokens), *weights, offset,
            MOE_SCALING]


def moe_token_inputs(tokens: int, experts: int, hidden: int, seed: int, device):
    """Routing logits [T, E], bias [E] bf16, fp8 hidden states [T, H] and scales [H/128, T]
    (the expert-parallel check's, over any number of experts)."""
    g = torch.Generator(device=device).manual_seed(seed)
    logits = torch.randn(tokens, experts, generator=g, device=device) * 1.5
    bias = (0.01 * torch.randn(experts, generator=g, device=device)).to(torch.bfloat16)
    x = (torch.randn(tokens, hidden, generator=g, device=device) * 2).to(FP8)
    x_scale = torch.rand(hidden // 128, tokens, generator=g, device=device) * 0.5 + 0.25
    return logits, bias, x, x_scale


def moe_expert_weights(experts: range, hidden: int, inter: int, seed: int, device):
    """fp8 weights and block scales of the given experts, each from its own seed, so that any
    process can make any expert's weights. Scales ~ 1/sqrt(fan-in) keep activations and
    outputs O(1), so that the definition's tolerance (atol 1) is not met trivially."""
    w1, s1, w2, s2 = [], [], [], []
    for e in experts:
        g = torch.Generator(device=device).manual_seed(seed * 100_003 + e)
        w1.append((torch.randn(2 * inter, hidden, generator=g, device=device) * 2).to(FP8))
        s1.append((torch.rand(2 * inter // 128, hidden // 128, generator=g, device=device) + 0.5)
                  * 0.5 / hidden ** 0.5)
        w2.append((torch.randn(hidden, inter, generator=g, device=device) * 2).to(FP8))
        s2.append((torch.rand(hidden // 128, inter // 128, generator=g, device=device) + 0.5)
                  * 2.0 / inter ** 0.5)
    return torch.stack(w1), torch.stack(s1), torch.stack(w2), torch.stack(s2)


# ----------------------------------------------------------------------------- oracles

def gdn_oracle(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale):
    """The gated delta rule in float64, token by token. Packed form: q, k [T, HQK, K]; v
    [T, H, V]; a, b [T, H]; state [N, H, V, K] or None. Returns output [T, H, V] and new_state
    [N, H, V, K]; an empty sequence's new state is zero, as in the contest's reference."""
    f = torch.float64
    num_seqs, heads = cu_seqlens.numel() - 1, v.shape[1]
    group = heads // q.shape[1]
    scale = scale or q.shape[-1] ** -0.5
    q, k = q.to(f).repeat_interleave(group, 1), k.to(f).repeat_interleave(group, 1)
    g = torch.exp(-torch.exp(A_log.to(f)) * F.softplus(a.to(f) + dt_bias.to(f)))  # [T, H]
    beta = torch.sigmoid(b.to(f))
    out = torch.zeros(v.shape, dtype=f, device=v.device)
    new_state = torch.zeros(num_seqs, heads, v.shape[2], q.shape[2], dtype=f, device=v.device)
    for n in range(num_seqs):
        bos, eos = int(cu_seqlens[n]), int(cu_seqlens[n + 1])
        if bos == eos:
            continue
        s = state[n].to(f).clone() if state is not None else new_state[n]
        for t in range(bos, eos):
            s = g[t, :, None, None] * s  # [H, V, K]
            old = torch.einsum("hvk,hk->hv", s, k[t])
            s = s + torch.einsum("hv,hk->hvk", beta[t, :, None] * (v[t].to(f) - old), k[t])
            out[t] = scale * torch.einsum("hvk,hk->hv", s, q[t])
        new_state[n] = s
    return out, new_state


def gdn_decode_oracle(q, k, v, state, A_log, a, dt_bias, b, scale):
    """Decode as prefill of one token per sequence."""
    batch = q.shape[0]
    cu = torch.arange(batch + 1)
    out, s = gdn_oracle(q[:, 0], k[:, 0], v[:, 0], state, A_log, a[:, 0], dt_bias, b[:, 0], cu, scale)
    return out[:, None], s


def dsa_attention_oracle(q_nope, q_pe, ckv, kpe, idx, sm_scale):
    """Per token: softmax over its valid slots in float64; lse in base 2 (-inf for none)."""
    f = torch.float64
    kc, kp = ckv.reshape(-1, 512).to(f), kpe.reshape(-1, 64).to(f)
    out = torch.zeros(q_nope.shape, dtype=f, device=q_nope.device)
    lse = torch.full(q_nope.shape[:2], float("-inf"), dtype=f, device=q_nope.device)
    for t in range(idx.shape[0]):
        slots = idx[t][idx[t] >= 0].long()
        if slots.numel() == 0:
            continue
        logits = (q_nope[t].to(f) @ kc[slots].t() + q_pe[t].to(f) @ kp[slots].t()) * sm_scale
        lse[t] = torch.logsumexp(logits, dim=1) / math.log(2.0)
        out[t] = torch.softmax(logits, dim=1) @ kc[slots]
    return out, lse


def dsa_indexer_scores(q, k_cache, weights, table):
    """float64 scores [B, M * 64] of every position of every row's pages."""
    from fibkit.references.dsa_topk_indexer_fp8_h64_d128_topk2048_ps64 import dequant_k_cache

    keys = dequant_k_cache(k_cache).double()[table.long()].flatten(1, 2)  # [B, M*64, 128]
    per_head = torch.relu(torch.einsum("bhd,bnd->bhn", q.double(), keys))
    return torch.einsum("bhn,bh->bn", per_head, weights.double())


def moe_oracle(logits, bias, x, x_scale, weights, first_expert: int,
               scaling: float = MOE_SCALING) -> torch.Tensor:
    """float64 contribution of experts [first_expert, first_expert + len) to the MoE output:
    routing in fp32 as the definition does (top-k choices must match), every product in
    float64."""
    from fibkit.references.moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048 import (
        BLOCK, dequant_blocks, route)

    topk_idx, combine = route(logits, bias, scaling)
    xs = x.double() * x_scale.double().t().repeat_interleave(BLOCK, dim=1)
    out = torch.zeros(xs.shape, dtype=torch.float64, device=xs.device)
    w1, s1, w2, s2 = weights
    inter = w2.shape[2]
    for local in range(w1.shape[0]):
        e = first_expert + local
        picked = (topk_idx == e).any(dim=1).nonzero().squeeze(1)
        if picked.numel() == 0:
            continue
        g1 = xs[picked] @ dequant_blocks(w1[local], s1[local]).double().t()
        up, gate = g1[:, :inter], g1[:, inter:]
        o = (gate * torch.sigmoid(gate) * up) @ dequant_blocks(w2[local], s2[local]).double().t()
        out.index_add_(0, picked, o * combine[picked, e, None].double())
    return out


def moe_oracle_of(args: Sequence[Any]) -> torch.Tensor:
    """moe_oracle on a definition-ordered argument list (moe_inputs)."""
    logits, bias, x, x_scale, w1, s1, w2, s2, offset, scaling = args
    return moe_oracle(logits, bias, x, x_scale, (w1, s1, w2, s2), offset, scaling)


def solution_call(definition: str, variant: str):
    """A solution folder's (*inputs, *outputs) -> None (fibkit.ops.solution_call, by name or alias)."""
    from fibkit.ops import solution_call as call

    return call(catalog.resolve(definition).name, variant)


def assert_graph_replays_are_right(run, args: Sequence[Any], outs: Sequence[torch.Tensor], fresh_inputs,
                                   check, seeds=(12, 13)):
    """No host sync on the call path: the call (built outside, by one run) captures into a CUDA
    graph, and each replay on fresh inputs copied into the captured ones (fresh_inputs(seed))
    passes check(args, outs), the outputs poisoned before each replay."""
    run(*args, *outs)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run(*args, *outs)
    for seed in seeds:
        for dst, src in zip(args, fresh_inputs(seed)):
            if isinstance(dst, torch.Tensor):
                dst.copy_(src)
        for o in outs:
            o.fill_(float("nan") if o.is_floating_point() else -7)
        graph.replay()
        check(args, outs)


def assert_concurrent_calls_match_alone(run, calls: Sequence[Sequence[Any]],
                                        outputs: Sequence[Sequence[torch.Tensor]], replays: int = 100):
    """Two (or more) calls captured on forked streams of one CUDA graph, as a serving engine
    overlapping batches runs them: every replay finishes within 30 s and leaves each call's
    outputs bitwise equal to the same call run alone (no buffer shared between calls, no wait
    on another program that the scheduler could hold back)."""
    import time

    alone = []
    for args, outs in zip(calls, outputs):
        run(*args, *outs)
        alone.append([o.clone() for o in outs])
    streams = [torch.cuda.Stream() for _ in calls]
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        origin = torch.cuda.current_stream()
        for stream, args, outs in zip(streams, calls, outputs):
            stream.wait_stream(origin)
            with torch.cuda.stream(stream):
                for o in outs:
                    o.fill_(float("nan") if o.is_floating_point() else -7)
                run(*args, *outs)
        for stream in streams:
            origin.wait_stream(stream)
    for replay in range(replays):
        graph.replay()
        done = torch.cuda.Event()
        done.record()
        start = time.monotonic()
        while not done.query():
            assert time.monotonic() - start < 30, f"replay {replay} made no progress in 30 s"
            time.sleep(1e-3)
        for call, (outs, want) in enumerate(zip(outputs, alone)):
            assert all(torch.equal(o, w) for o, w in zip(outs, want)), f"replay {replay}, call {call}"


def solution_module(definition: str, variant: str):
    """A solution folder's entry module, imported as part of the fibkit package."""
    import importlib

    return importlib.import_module(f"fibkit.solutions.{definition}.{variant}.main")

