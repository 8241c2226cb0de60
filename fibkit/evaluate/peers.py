"""What runs in an evaluation: the solution under test and the peers checked and timed beside
it on the same inputs.

The solution is the user's (`--solution PATH`) or one of fibkit's variants. Peers:
`fibkit`: fibkit's default solution, beside a user's solution.
`torch`: the baseline solution folder of each definition (written as well as PyTorch allows).
`fla`: fla-core's Triton kernels for the two GDN definitions, called with the contest's
semantics (raw gate inputs and beta logits handled in-kernel, k-last state via
state_v_first=True); value-returning, so the evaluator copies nothing for them.
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
        variant = opts.variant or spec.default_variant
        main = solution_contender("ours", pack(spec.solution_dir(variant)), definition)
    peers: List[Contender] = []
    if not (opts.peers and opts.timing):
        return main, peers
    if opts.solution is not None:
        peers.append(solution_contender("fibkit", pack(spec.solution_dir()), definition))
    for name in spec.peers:
        if name == "torch":
            if variant != "baseline":
                peers.append(solution_contender("torch", pack(spec.solution_dir("baseline")), definition))
        else:
            fn = external_peer(name, spec.name)
            if fn is not None:
                peers.append(Contender(name, fn, False))
    return main, peers


def external_peer(name: str, definition: str) -> Optional[Callable]:
    """A value-returning peer callable, or None where the peer is not installed or does not
    implement the definition."""
    if name == "fla" and definition in _FLA and fla_available():
        return _FLA[definition]
    return None


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
