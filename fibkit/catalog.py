"""The five contest definitions as data.

Everything that differs between definitions lives here: short alias, track, how outputs are
judged, how to count the minimal bytes and FLOPs of a workload, which axis measures its size,
how its stored inputs are synthesized and which inputs have a random recipe of their own, where
its workload list is, how many warm-up runs and timed iterations the contest gave it, and which
peers run beside it. The dataset writer, the evaluator, the harness and the report read this
table instead of branching on names. Adding a definition: an entry here (or `register`), its
definition JSON, reference, synthesis function and solution folders.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple

PACKAGE_DIR = Path(__file__).resolve().parent
OFFICIAL_WORKLOADS = PACKAGE_DIR / "dataset" / "official_workloads.json"

# Ceilings measured on our H200 (../shared/README.md): device-to-device copy and matrix rates.
COPY_BYTES_PER_S = 4.25e12
BF16_FLOPS = 804e12
FP8_FLOPS = 1487e12
MOE_FP8_FLOPS = 1.3e15  # the fused_moe track's stated floor rate


@dataclass(frozen=True)
class Judge:
    """How a solution's outputs are compared with the reference's.

    kind "allclose": an element passes when |x - y| <= atol or |x - y| / |y| <= rtol, and at
    least `required_ratio` of each output's elements must pass. kind "topk_set": the indexer's
    set judgment (reachable, distinct, sorted scores close within atol/rtol)."""

    kind: str = "allclose"
    atol: float = 1e-2
    rtol: float = 1e-2
    required_ratio: float = 1.0
    # How many leading outputs a value-returning solution may return: the contest's DSA
    # attention evaluator accepts `output` alone (lse is optional). None: all of them.
    min_outputs: Optional[int] = None


@dataclass(frozen=True)
class Cost:
    """Minimal device-memory bytes and FLOPs of one call, and the rate the FLOPs run at."""

    bytes: float
    flops: float
    flops_rate: float

    @property
    def floor_us(self) -> float:
        return max(self.bytes / COPY_BYTES_PER_S, self.flops / self.flops_rate) * 1e6


def _lazy(module: str, attr: str) -> Callable:
    """module.attr, imported on first call (so the catalog imports no torch)."""
    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)
    call.__qualname__ = f"{module}.{attr}"
    return call


@dataclass(frozen=True)
class DefSpec:
    name: str
    alias: str
    track: str
    op_type: str
    size_axis: str  # the axis plotted on the x-axis of the report
    judge: Judge
    cost: Callable[[Mapping[str, int], Mapping[str, object]], Cost]
    # synthesize(axes, gen, device) -> {input name: tensor}: realistic values of (at least)
    # the inputs the official set stores as safetensors (fibkit/dataset).
    synthesize: Callable
    # Inputs the contest draws at random with a recipe of their own: name -> make(shape, gen,
    # device) (the rest follow evaluate/inputs.random_tensor).
    random_inputs: Mapping[str, Callable] = field(default_factory=dict)
    peers: tuple = ("torch",)
    default_variant: str = "baseline"
    # Where the default is a CUDA solution: the Triton variant computing the same thing, which
    # runs in its place on the CPU (Triton's interpreter: CI, and the library API there).
    twin: Optional[str] = None
    # The function of the default solution's entry file that the library API calls, where it is
    # not the contest's entry point: the MoE's `run` captures and replays CUDA graphs of its own
    # (the contest's timing counts every gap between launches), `launch` enqueues the kernels
    # into the caller's stream, or the caller's graph capture.
    library_entry: Optional[str] = None
    # oracle(inputs in definition order) -> the first output in float64, more exact than the
    # reference (which computes in fp32 or bf16): where there is one, each workload's result
    # gives the solution's relative error against it (first trial), beside the contest's verdict.
    oracle: Optional[Callable] = None
    # (warm-up runs, timed iterations) per trial, as the contest ran this definition; the
    # reference and the peers are timed the same way.
    timing: Tuple[int, int] = (10, 50)
    quick_count: int = 4
    # Where its files are: <root>/definitions/<op_type>/<name>.json, <root>/references/<name>.py,
    # <root>/solutions/<name>/<variant>/; and its workload list (the official_workloads.json format).
    root: Path = PACKAGE_DIR
    workloads_file: Path = OFFICIAL_WORKLOADS

    @property
    def definition_path(self) -> Path:
        return self.root / "definitions" / self.op_type / f"{self.name}.json"

    @property
    def reference_path(self) -> Path:
        return self.root / "references" / f"{self.name}.py"

    def reference(self) -> Callable:
        """The reference's `run`: fibkit.references.<name> for the package's definitions."""
        if self.root == PACKAGE_DIR:
            return importlib.import_module(f"fibkit.references.{self.name}").run
        spec = importlib.util.spec_from_file_location(f"fibkit_reference_{self.name}", self.reference_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.run

    def solution_dir(self, variant: Optional[str] = None) -> Path:
        return self.root / "solutions" / self.name / (variant or self.default_variant)

    def variant_for(self, asked: Optional[str], device: str) -> str:
        """The variant of fibkit's solution a run uses: the one asked for, else the default;
        on the CPU (Triton's interpreter), a CUDA default's twin, which is what runs there."""
        if asked:
            return asked
        return self.twin if device == "cpu" and self.twin else self.default_variant

    def variants(self) -> List[str]:
        root = self.root / "solutions" / self.name
        return sorted(p.name for p in root.iterdir() if (p / "config.toml").is_file())


# ---------------------------------------------------------------------------------------------
# Cost models. `inputs` maps input names to tensors (or scalars) of the actual call, so a cost
# may depend on data: the MoE floor counts only experts some token picked, DSA counts distinct
# gathered slots, the indexer counts the pages its rows reach.

def _gdn_decode_cost(axes, inputs) -> Cost:
    b = axes["batch_size"]
    state = b * 8 * 128 * 128 * 4
    small = b * (4 + 4 + 8) * 128 * 2 + b * 8 * 2 * 2 + b * 8 * 128 * 2
    flops = b * 8 * 128 * 128 * 8  # decay, k.S, rank-1 update, q.S
    return Cost(2 * state + small, flops, BF16_FLOPS)


def _gdn_prefill_cost(axes, inputs) -> Cost:
    t, n = axes["total_seq_len"], axes["num_seqs"]
    state = n * 8 * 128 * 128 * 4
    tokens = t * ((4 + 4 + 8) * 128 * 2 + 8 * 2 * 2 + 8 * 128 * 2)
    # Chunked form per token and v head: three 128x128 products (state read, state update,
    # output from state) and four 64-wide intra-chunk products of 128.
    flops = t * 8 * (3 * 128 * 128 * 2 + 4 * 64 * 128 * 2)
    return Cost(2 * state + tokens, flops, BF16_FLOPS)


def _dsa_attention_cost(axes, inputs) -> Cost:
    idx = inputs["sparse_indices"]
    t = axes["num_tokens"]
    valid = idx[idx >= 0]
    distinct = int(valid.unique().numel())
    per_slot = (512 + 64) * 2
    q_out = t * 16 * (512 + 64) * 2 + t * 16 * 512 * 2 + t * 16 * 4 + idx.numel() * 4
    flops = int(valid.numel()) * 16 * (576 + 512) * 2
    return Cost(distinct * per_slot + q_out, flops, BF16_FLOPS)


def _dsa_indexer_cost(axes, inputs) -> Cost:
    import torch

    seq_lens = inputs["seq_lens"].long()
    table = inputs["block_table"]
    pages_needed = (seq_lens + 63) // 64
    col = torch.arange(table.shape[1], device=table.device)
    used = table[col[None, :] < pages_needed[:, None]]
    distinct_pages = int(used.unique().numel())
    b = axes["batch_size"]
    nbytes = distinct_pages * 64 * 132 + b * 64 * 128 + b * 64 * 4 + b * 4 + table.numel() * 4
    nbytes += b * 2048 * 4
    flops = int(seq_lens.sum()) * 64 * 128 * 2
    return Cost(nbytes, flops, FP8_FLOPS)


def _moe_cost(axes, inputs) -> Cost:
    from fibkit.references.moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048 import route

    t = axes["seq_len"]
    topk_idx, _ = route(inputs["routing_logits"], inputs["routing_bias"],
                        float(inputs["routed_scaling_factor"]))
    first = int(inputs["local_expert_offset"])
    local = topk_idx[(topk_idx >= first) & (topk_idx < first + 32)]
    pairs = int(local.numel())
    experts = int(local.unique().numel())
    h, i = 7168, 2048
    per_expert = 2 * i * h + h * i + (32 * 56 + 56 * 16) * 4
    acts = t * h + t * 56 * 4 + t * 256 * 4 + 256 * 2 + t * h * 2
    flops = pairs * 2 * (h * 2 * i + i * h)
    return Cost(experts * per_expert + acts, flops, MOE_FP8_FLOPS)


SPECS: Dict[str, DefSpec] = {
    s.name: s
    for s in [
        DefSpec(
            name="moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048",
            alias="moe", track="fused_moe", op_type="moe", size_axis="seq_len",
            judge=Judge(atol=1.0, rtol=0.3, required_ratio=0.9), cost=_moe_cost,
            synthesize=_lazy("fibkit.dataset.moe", "synthesize"), quick_count=4,
            default_variant="triton", library_entry="launch",
            oracle=_lazy("fibkit.testing", "moe_oracle_of"),
        ),
        DefSpec(
            name="dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64",
            alias="dsa_attention", track="sparse_attention", op_type="dsa_paged",
            size_axis="num_tokens", judge=Judge(min_outputs=1), cost=_dsa_attention_cost,
            synthesize=_lazy("fibkit.dataset.dsa", "synthesize_attention"),
            default_variant="cuda", twin="triton",
        ),
        DefSpec(
            name="dsa_topk_indexer_fp8_h64_d128_topk2048_ps64",
            alias="dsa_indexer", track="sparse_attention", op_type="dsa_paged",
            size_axis="max_num_pages", judge=Judge(kind="topk_set"), cost=_dsa_indexer_cost,
            synthesize=_lazy("fibkit.dataset.dsa", "synthesize_indexer"),
            # The contest re-packs a random K cache from normal keys (random bytes would make
            # NaN scales).
            random_inputs={"k_index_cache_fp8": _lazy("fibkit.dataset.dsa", "random_k_cache")},
            peers=("torch", "flashinfer-topk"), quick_count=6, default_variant="cuda", twin="triton",
        ),
        DefSpec(
            name="gdn_decode_qk4_v8_d128_k_last",
            alias="gdn_decode", track="gated_delta_net", op_type="gdn", size_axis="batch_size",
            judge=Judge(), cost=_gdn_decode_cost,
            synthesize=_lazy("fibkit.dataset.gdn", "synthesize_decode"), peers=("torch", "fla", "flashinfer"),
            default_variant="cuda", twin="triton",
        ),
        DefSpec(
            name="gdn_prefill_qk4_v8_d128_k_last",
            alias="gdn_prefill", track="gated_delta_net", op_type="gdn",
            size_axis="total_seq_len", judge=Judge(), cost=_gdn_prefill_cost,
            synthesize=_lazy("fibkit.dataset.gdn", "synthesize_prefill"),
            peers=("torch", "fla", "flashinfer", "flashinfer-kernel"), timing=(1, 5), quick_count=5,
            default_variant="cuda", twin="triton",
        ),
    ]
}

ALIASES = {s.alias: s.name for s in SPECS.values()}


def register(spec: DefSpec) -> DefSpec:
    """Add a definition to the catalog (a seventh one, a toy one in a test); `unregister`
    takes it out again."""
    SPECS[spec.name] = spec
    ALIASES[spec.alias] = spec.name
    definition_dict.cache_clear()
    return spec


def unregister(name: str) -> None:
    spec = SPECS.pop(name)
    ALIASES.pop(spec.alias, None)
    definition_dict.cache_clear()


def resolve(name_or_alias: str) -> DefSpec:
    """A definition by its full name or short alias, with a helpful error otherwise."""
    name = ALIASES.get(name_or_alias, name_or_alias)
    if name in SPECS:
        return SPECS[name]
    in_track = [s for s in SPECS.values() if s.track == name_or_alias]
    if in_track:  # the starter kit's config.toml template names a track here
        raise KeyError(f"{name_or_alias!r} is a track, not a definition; name one of its definitions: "
                       + ", ".join(f"{s.name} ({s.alias})" for s in in_track))
    known = ", ".join(f"{s.alias} ({s.name})" for s in SPECS.values())
    raise KeyError(f"unknown definition {name_or_alias!r}; known: {known}")


def resolve_many(names: Optional[List[str]]) -> List[DefSpec]:
    return [resolve(n) for n in names] if names else list(SPECS.values())


def reference_source(spec: DefSpec) -> str:
    return spec.reference_path.read_text()


@lru_cache(maxsize=None)
def definition_dict(name: str) -> dict:
    """The definition JSON with its reference field filled from the definition's reference file."""
    spec = SPECS[name]
    data = json.loads(spec.definition_path.read_text())
    data["reference"] = reference_source(spec)
    return data


def load_definition(name: str):
    """The definition as a flashinfer_bench.data.Definition."""
    from flashinfer_bench.data import Definition

    return Definition.model_validate(definition_dict(resolve(name).name))
