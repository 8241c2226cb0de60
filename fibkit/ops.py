"""The library API: one function per operator, for serving-engine developers.

Each validates its inputs against the definition (dtype, shape, device, contiguity, and the
index ranges of the DSA operators) and raises ValueError with the reason, then allocates the
outputs and calls the definition's default solution in destination-passing style. Every call
enqueues its kernels on the current stream, so a caller may capture it in a CUDA graph (the
MoE's contest entry point replays graphs it captures itself; the library calls its kernels).

Index range checks read the indices on the host (one synchronization); `check_indices=False`
skips them (on a hot path, or inside CUDA-graph capture): the indices are then unchecked, and an
out-of-range one reads or writes out of bounds.

The kernels need CUDA tensors. CPU tensors raise ValueError, unless Triton's interpreter was
chosen (TRITON_INTERPRET=1 in the environment before the first call): then they
run through it, with fibkit's fixes to its bf16 arithmetic applied (`fibkit.evaluate.interpreter`).
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence

import torch

from fibkit import catalog


def solution_call(name: str, variant: str, function: Optional[str] = None):
    """(*inputs, *outputs) -> None of one of fibkit's solution folders of definition `name`: a
    Triton or Python one's entry point imported (or `function` of its entry file), a CUDA one
    built by flashinfer-bench's builder on first use (about a minute, once per machine)."""
    from fibkit.evaluate.solution import load, pack, read_config

    folder = catalog.SPECS[name].solution_dir(variant)
    cfg = read_config(folder)
    if cfg["build"]["language"] == "cuda":
        if function is not None:
            raise ValueError(f"{name}/{variant}: a CUDA solution has one entry point, not {function!r}")
        return load(pack(folder), catalog.load_definition(name))
    file, func = cfg["build"]["entry_point"].split("::")
    module = importlib.import_module(f"fibkit.solutions.{name}.{variant}.{file[:-3]}")
    return getattr(module, function or func)


@lru_cache(maxsize=None)
def _entry(name: str, interpreted: bool):
    """The default solution's callable (outputs as arguments), its library entry where the
    catalog names one; through Triton's interpreter, a CUDA default's Triton twin instead."""
    spec = catalog.SPECS[name]
    variant = spec.variant_for(None, "cpu" if interpreted else "cuda")
    return solution_call(name, variant, spec.library_entry if variant == spec.default_variant else None)


def _validate(name: str, args: Sequence[Any]) -> Dict[str, int]:
    """Check every input against the definition; returns the var-axis values."""
    definition = catalog.load_definition(name)
    axes: Dict[str, int] = {}
    device = None
    for (arg_name, spec), value in zip(definition.inputs.items(), args):
        if spec.shape is None:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{name}: {arg_name} must be a Python number, got {type(value).__name__}")
            continue
        if value is None:
            # flashinfer-bench 0.1.2's TensorSpec drops "optional": read it from our JSON.
            if catalog.definition_dict(name)["inputs"][arg_name].get("optional", False):
                continue
            raise ValueError(f"{name}: {arg_name} is required")
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name}: {arg_name} must be a torch.Tensor, got {type(value).__name__}")
        want = getattr(torch, spec.dtype.value)
        if value.dtype != want:
            raise ValueError(f"{name}: {arg_name} must be {want}, got {value.dtype}")
        if value.dim() != len(spec.shape):
            raise ValueError(f"{name}: {arg_name} must have {len(spec.shape)} dims {spec.shape}, got {tuple(value.shape)}")
        for axis, size in zip(spec.shape, value.shape):
            ax = definition.axes[axis]
            expected = getattr(ax, "value", None) if ax.type == "const" else axes.setdefault(axis, size)
            if size != expected:
                raise ValueError(f"{name}: {arg_name} has {axis} = {size}, expected {expected} "
                                 f"(shape {tuple(value.shape)} vs {spec.shape})")
        if not value.is_contiguous():
            raise ValueError(f"{name}: {arg_name} must be contiguous")
        if device is None:
            device = value.device
        elif value.device != device:
            raise ValueError(f"{name}: {arg_name} is on {value.device}, other inputs on {device}")
    return axes


def _interpreting() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET") == "1"


def _call(name: str, args: List[Any], axes: Dict[str, int]):
    definition = catalog.load_definition(name)
    device = next(a.device for a in args if isinstance(a, torch.Tensor))
    if device.type != "cuda":
        if not _interpreting():
            raise ValueError(f"{name}: needs CUDA tensors, got {device} ones (to run on the CPU "
                             f"through Triton's interpreter, set TRITON_INTERPRET=1 before the first call)")
        from fibkit.evaluate.interpreter import patch

        patch()  # the interpreter's bf16 arithmetic is wrong without fibkit's fixes
    outs = [torch.empty(shape, dtype=getattr(torch, s.dtype.value), device=device)
            for s, shape in zip(definition.outputs.values(), definition.get_output_shapes(axes))]
    _entry(name, device.type != "cuda")(*args, *outs)
    return outs[0] if len(outs) == 1 else tuple(outs)


def gdn_decode(q, k, v, state, A_log, a, dt_bias, b, scale: float = 0.0):
    """One gated-delta-net decode step. q, k [B, 1, 4, 128] bf16; v [B, 1, 8, 128] bf16;
    state [B, 8, 128, 128] fp32 k-last or None; A_log, dt_bias [8] fp32; a, b [B, 1, 8] bf16.
    Returns (output [B, 1, 8, 128] bf16, new_state [B, 8, 128, 128] fp32)."""
    name = "gdn_decode_qk4_v8_d128_k_last"
    args = [q, k, v, state, A_log, a, dt_bias, b, float(scale)]
    return _call(name, args, _validate(name, args))


def gdn_prefill(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale: float = 0.0,
                check_indices: bool = True):
    """Gated-delta-net prefill over packed sequences. q, k [T, 4, 128]; v [T, 8, 128]; a, b
    [T, 8]; cu_seqlens [N + 1] int64 (0 first, non-decreasing, T last; empty sequences are
    allowed and get a zero new_state, as in the contest); state [N, 8, 128, 128] fp32 or None.
    Returns (output [T, 8, 128] bf16, new_state [N, 8, 128, 128] fp32)."""
    name = "gdn_prefill_qk4_v8_d128_k_last"
    args = [q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, float(scale)]
    axes = _validate(name, args)
    if axes.get("len_cu_seqlens", 0) < 1:
        raise ValueError(f"{name}: cu_seqlens needs at least one element")
    axes["num_seqs"] = axes["len_cu_seqlens"] - 1
    if state is not None and state.shape[0] != axes["num_seqs"]:
        raise ValueError(f"{name}: state has {state.shape[0]} sequences, cu_seqlens {axes['num_seqs']}")
    if check_indices:
        cu = cu_seqlens.tolist()
        if cu[0] != 0 or cu[-1] != q.shape[0] or any(x > y for x, y in zip(cu, cu[1:])):
            raise ValueError(f"{name}: cu_seqlens must start at 0, never decrease and end at "
                             f"T = {q.shape[0]}; got {cu if len(cu) <= 8 else cu[:4] + ['...'] + cu[-2:]}")
    return _call(name, args, axes)


def dsa_sparse_attention(q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, sm_scale: float,
                         check_indices: bool = True):
    """Sparse MLA attention. Returns (output [T, 16, 512] bf16, lse [T, 16] fp32, base 2)."""
    name = "dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64"
    args = [q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, float(sm_scale)]
    axes = _validate(name, args)
    if check_indices:
        slots = ckv_cache.shape[0] * ckv_cache.shape[1]
        bad = (sparse_indices < -1) | (sparse_indices >= slots)
        if bool(bad.any()):
            raise ValueError(f"{name}: sparse_indices outside [-1, {slots})")
    return _call(name, args, axes)


def dsa_topk_indexer(q_index_fp8, k_index_cache_fp8, weights, seq_lens, block_table,
                     check_indices: bool = True):
    """Top-2048 token slots per row. Returns topk_indices [B, 2048] int32, -1 padded: a row of
    at most 2048 tokens gets all of them in position order (no scoring needed), a longer row
    its best 2048 as a set (the CUDA solution lists them in position order, its Triton twin on
    the CPU best first)."""
    name = "dsa_topk_indexer_fp8_h64_d128_topk2048_ps64"
    args = [q_index_fp8, k_index_cache_fp8, weights, seq_lens, block_table]
    axes = _validate(name, args)
    if check_indices:
        pages, max_pages = k_index_cache_fp8.shape[0], block_table.shape[1]
        if bool(((seq_lens < 0) | (seq_lens > max_pages * 64)).any()):
            raise ValueError(f"{name}: seq_lens outside [0, max_num_pages * 64 = {max_pages * 64}]")
        used = torch.arange(max_pages, device=block_table.device)[None] < ((seq_lens.long() + 63) // 64)[:, None]
        if bool((((block_table < 0) | (block_table >= pages)) & used).any()):
            raise ValueError(f"{name}: block_table has pages outside [0, {pages}) within seq_lens")
    return _call(name, args, axes)


def moe_fp8_block_scale(routing_logits, routing_bias, hidden_states, hidden_states_scale,
                        gemm1_weights, gemm1_weights_scale, gemm2_weights, gemm2_weights_scale,
                        local_expert_offset: int, routed_scaling_factor: float):
    """DeepSeek-V3 fp8 block-scale MoE on one EP rank. Returns output [T, 7168] bf16."""
    name = "moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048"
    if not 0 <= int(local_expert_offset) <= 256 - 32:
        raise ValueError(f"{name}: local_expert_offset must be in [0, 224], got {local_expert_offset}")
    args = [routing_logits, routing_bias, hidden_states, hidden_states_scale, gemm1_weights,
            gemm1_weights_scale, gemm2_weights, gemm2_weights_scale, int(local_expert_offset),
            float(routed_scaling_factor)]
    return _call(name, args, _validate(name, args))
