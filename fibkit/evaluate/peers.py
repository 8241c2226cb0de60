"""Peers timed beside our solution on the same inputs.

`torch`: the baseline solution folder of each definition (written as well as PyTorch allows).
`fla`: fla-core's Triton kernels for the two GDN definitions, called with the contest's
semantics (raw gate inputs and beta logits handled in-kernel, k-last state via
state_v_first=True). Peers are value-returning; the evaluator copies nothing for them.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional


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
