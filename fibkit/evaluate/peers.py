"""What runs in an evaluation: the solution under test and the peers checked and timed beside
it on the same inputs.

The solution is the user's (`--solution PATH`) or one of fibkit's variants. Peers:
`fibkit`: fibkit's default solution, beside a user's solution.
`torch`: the baseline solution folder of each definition (written as well as PyTorch allows).
`fla`: fla-core's Triton kernels for the two GDN definitions, called with the contest's
semantics (raw gate inputs and beta logits handled in-kernel, k-last state via
state_v_first=True); value-returning, so the evaluator copies nothing for them.
`flashinfer` (gdn_prefill): FlashInfer's Hopper kernel `chunk_gated_delta_rule` as a whole call,
the gates computed in PyTorch first (what a contestant calling it pays), and
`flashinfer-kernel`: the same kernel with the gates computed before the timed region. Its JIT
module is built once per machine, on first use (about 5 minutes on 16 cores).
`flashinfer` (gdn_decode): FlashInfer's Hopper decode `gated_delta_rule_decode_pretranspose`
(CuTe DSL, fp32 k-last state, raw gates handled in-kernel). It updates the state in place, so
its arguments get a copy of the state (zeros without one) and an output buffer, made outside
the timed region. It needs the nvidia-cutlass-dsl wheels (scripts/cutlass-dsl-wheels.sh).
`flashinfer-topk` (dsa_indexer, a partial figure): FlashInfer's radix top-k with the page-table
transform (`top_k_page_table_transform`, k = 2048) alone, on fp32 scores computed before the
timed region (what a contestant composing it with a scoring kernel would pay for the selection).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple


def _fla_decode(q, k, v, state, A_log, a, dt_bias, b, scale):
    from fla.ops.gated_delta_rule import fused_recurrent_gated_delta_rule

    return fused_recurrent_gated_delta_rule(
        q, k, v, g=a, beta=b, scale=scale or None, initial_state=state, output_final_state=True,
        use_gate_in_kernel=True, A_log=A_log, dt_bias=dt_bias, use_beta_sigmoid_in_kernel=True,
        state_v_first=True)


def _fla_prefill(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale):
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    o, s = chunk_gated_delta_rule(
        q[None], k[None], v[None], a[None], b[None], scale=scale or None, initial_state=state,
        output_final_state=True, use_beta_sigmoid_in_kernel=True, state_v_first=True,
        cu_seqlens=cu_seqlens, use_gate_in_kernel=True, A_log=A_log, dt_bias=dt_bias)
    return o[0], s


_FLA = {"gdn_decode_qk4_v8_d128_k_last": _fla_decode,
        "gdn_prefill_qk4_v8_d128_k_last": _fla_prefill}


def _flashinfer_gates(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale):
    """The definition's inputs as FlashInfer's kernel takes them: the decay g itself and
    beta = sigmoid(b), in fp32 (the state is k-last already)."""
    import torch.nn.functional as F

    g = (-A_log.float().exp() * F.softplus(a.float() + dt_bias.float())).exp()
    return q, k, v, state, g, b.float().sigmoid(), cu_seqlens, scale


def _flashinfer_kernel(q, k, v, state, g, beta, cu_seqlens, scale):
    from flashinfer.gdn_prefill import chunk_gated_delta_rule

    return chunk_gated_delta_rule(q, k, v, g=g, beta=beta, scale=scale or None,
                                  initial_state=state, output_final_state=True,
                                  cu_seqlens=cu_seqlens)


def _flashinfer_prefill(*inputs):
    return _flashinfer_kernel(*_flashinfer_gates(*inputs))


def _flashinfer_decode_arguments(q, k, v, state, A_log, a, dt_bias, b, scale):
    """The definition's inputs with the state FlashInfer overwrites: a copy (zeros for a call
    without one), and the bf16 output buffer it would otherwise allocate and zero in the call."""
    import torch

    batch, _, v_heads, head_v = v.shape
    if state is None:
        state = torch.zeros(batch, v_heads, head_v, q.shape[-1], dtype=torch.float32, device=q.device)
    output = torch.empty(batch, 1, v_heads, head_v, dtype=torch.bfloat16, device=q.device)
    return q, k, v, state.clone(), A_log, a, dt_bias, b, scale, output


def _flashinfer_decode(q, k, v, state, A_log, a, dt_bias, b, scale, output):
    from flashinfer.gdn_decode import gated_delta_rule_decode_pretranspose

    return gated_delta_rule_decode_pretranspose(q, k, v, state, A_log, a, dt_bias, b, scale=scale or None,
                                                output=output, use_qk_l2norm=False)


def flashinfer_decode_available() -> bool:
    """FlashInfer's CuTe DSL decode importable (it needs nvidia-cutlass-dsl) on an sm_90+ GPU."""
    try:
        import torch
        if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] < 9:
            return False
        import flashinfer.gdn_kernels.gdn_decode_pretranspose  # noqa: F401  (imports cutlass)
        from flashinfer.gdn_decode import gated_delta_rule_decode_pretranspose  # noqa: F401
        return True
    except Exception:
        return False


def _indexer_scores_and_slots(q_index_fp8, k_index_cache_fp8, weights, seq_lens, block_table):
    """Every position's slot (page * 64 + offset) and fp32 score, as FlashInfer's top-k takes
    them: [B, M * 64] each (the judge's scoring, at all of a row's positions)."""
    import torch
    from fibkit.evaluate.judge import indexer_scores

    pages = block_table.long().clamp(0, k_index_cache_fp8.shape[0] - 1)
    slots = (pages[:, :, None] * 64 + torch.arange(64, device=pages.device)).flatten(1)
    return indexer_scores(slots, q_index_fp8, k_index_cache_fp8, weights).contiguous(), slots.int(), seq_lens


def _flashinfer_topk(scores, slots, seq_lens):
    from flashinfer import top_k_page_table_transform

    return top_k_page_table_transform(scores, slots, seq_lens, 2048)


def flashinfer_available() -> bool:
    try:
        import torch
        import flashinfer  # noqa: F401

        return torch.cuda.is_available()
    except Exception:
        return False


def flashinfer_prefill_available() -> bool:
    """FlashInfer importable and the GPU a Hopper (its sm90 kernel); builds the JIT module
    here, once per machine, saying so."""
    try:
        import torch
        if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
            return False
        from flashinfer.jit.gdn import gen_gdn_prefill_sm90_module
    except Exception:
        return False
    spec = gen_gdn_prefill_sm90_module()
    if not (spec.is_aot or spec.jit_library_path.exists()):
        import sys
        print(f"fibkit: building FlashInfer's gdn_prefill kernel into {spec.jit_library_path.parent} "
              "(once per machine, about 5 minutes on 16 cores)", file=sys.stderr, flush=True)
        spec.build_and_load()
    return True


def fla_available() -> bool:
    try:
        import fla  # noqa: F401

        return True
    except Exception:
        return False


@dataclass
class Contender:
    """Something the evaluator checks and times: a name for tables, the callable, whether it
    takes its outputs as arguments, and the flashinfer-bench Solution it was built from (None
    for a library peer)."""

    name: str
    fn: Callable
    dps: bool
    solution: Any = None
    # Maps the definition's inputs to fn's arguments outside the timed region (a peer figure
    # that leaves work out, labelled as such).
    prepare: Optional[Callable] = None

    def arguments(self, inputs: List[Any]) -> List[Any]:
        return list(self.prepare(*inputs)) if self.prepare else list(inputs)


def solution_contender(name: str, solution, definition) -> Contender:
    from fibkit.evaluate.solution import load

    fn = load(solution, definition)
    return Contender(name, fn, fn.metadata.destination_passing_style, solution)


def contenders(spec, definition, opts) -> Tuple[Contender, List[Contender]]:
    """The solution under test and, when timing with peers, the peers in table order."""
    from fibkit.evaluate.solution import open_solution, pack

    if opts.solution is not None:
        main = solution_contender("yours", open_solution(opts.solution), definition)
        variant = None
    else:
        variant = spec.variant_for(opts.variant, opts.device)
        main = solution_contender("ours", pack(spec.solution_dir(variant)), definition)
    peers: List[Contender] = []
    if not (opts.peers and opts.timing):
        return main, peers
    for name in peer_names(spec, opts.solution is not None, variant):
        if opts.peer_names is not None and name not in opts.peer_names:
            continue
        if name == "fibkit":
            fibkit_variant = spec.variant_for(None, opts.device)
            peers.append(solution_contender("fibkit", pack(spec.solution_dir(fibkit_variant)), definition))
        elif name == "torch":
            peers.append(solution_contender("torch", pack(spec.solution_dir("baseline")), definition))
        else:
            peer = external_peer(name, spec.name)
            if peer is not None:
                peers.append(peer)
    return main, peers


def peer_names(spec, user_solution: bool, variant: Optional[str] = None) -> List[str]:
    """The peers timed beside a definition's solution, in table order: fibkit's own solution
    beside a user's, the torch baseline (unless it is the one under test), the libraries."""
    return ((["fibkit"] if user_solution else [])
            + [n for n in spec.peers if not (n == "torch" and variant == "baseline")])


@dataclass(frozen=True)
class LibraryPeer:
    """A library's implementation of one definition: the value-returning callable, the untimed
    preparation of its arguments (None: the definition's inputs as they are), and whether it
    runs here (asked per definition: one library's kernels need different GPUs and wheels)."""

    fn: Callable
    prepare: Optional[Callable]
    available: Callable[[], bool]


_DECODE = "gdn_decode_qk4_v8_d128_k_last"
_PREFILL = "gdn_prefill_qk4_v8_d128_k_last"
_INDEXER = "dsa_topk_indexer_fp8_h64_d128_topk2048_ps64"
# Library peers: name -> {definition: LibraryPeer}.
_LIBRARY_PEERS: Dict[str, Dict[str, LibraryPeer]] = {
    "fla": {d: LibraryPeer(fn, None, fla_available) for d, fn in _FLA.items()},
    "flashinfer": {_PREFILL: LibraryPeer(_flashinfer_prefill, None, flashinfer_prefill_available),
                   _DECODE: LibraryPeer(_flashinfer_decode, _flashinfer_decode_arguments, flashinfer_decode_available)},
    "flashinfer-kernel": {_PREFILL: LibraryPeer(_flashinfer_kernel, _flashinfer_gates, flashinfer_prefill_available)},
    "flashinfer-topk": {_INDEXER: LibraryPeer(_flashinfer_topk, _indexer_scores_and_slots, flashinfer_available)},
}


def external_peer(name: str, definition: str) -> Optional[Contender]:
    """A library peer of the definition, or None where the library does not implement the
    definition or cannot run it here."""
    peer = _LIBRARY_PEERS.get(name, {}).get(definition)
    if peer is None or not peer.available():
        return None
    return Contender(name, peer.fn, False, prepare=peer.prepare)


# One line per peer for reports; "partial" marks a figure that leaves part of the call untimed.
DESCRIPTIONS = {
    "fibkit": "fibkit's default solution on the same inputs",
    "torch": "the definition's PyTorch baseline (`baseline/`)",
    "fla": "fla-core's Triton kernels with the contest's semantics",
    "flashinfer": ("FlashInfer's Hopper kernels as whole calls: sm90 `chunk_gated_delta_rule` with the gates "
                   "computed in PyTorch (prefill); `gated_delta_rule_decode_pretranspose` on a copy of the "
                   "state (decode)"),
    "flashinfer-kernel": "partial: the same kernel alone, gates computed outside the timed region",
    "flashinfer-topk": "partial: FlashInfer's radix `top_k_page_table_transform` (k = 2048) alone, on fp32 "
                       "scores computed outside the timed region",
}


def versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "triton", "flashinfer-python", "flashinfer-bench", "fla-core",
                "cupti-python", "fibkit"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
