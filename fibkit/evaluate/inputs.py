"""A workload's inputs in definition order, as the contest builds them.

Stored inputs come from the dataset (or the synthesizer, same tensors); `random` inputs follow
the contest's recipe (normal floats, fp8 from a clamped normal, bounded integers), drawn from a
generator seeded by (seed, uuid, trial) so a re-run sees the same inputs and each trial fresh
ones. The indexer's random K cache is a packed fp8 cache of normal keys, as the contest's
evaluator re-packs it (random bytes would make NaN scales): inputs with a recipe of their own
are the catalog's `random_inputs`.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch

from fibkit import catalog
from fibkit.dataset import WorkloadSpec
from fibkit.dataset.writer import workload_seed

_INT_RANGES = {torch.int8: (-128, 128), torch.int16: (-1024, 1024),
               torch.int32: (-1024, 1024), torch.int64: (-1024, 1024)}


def random_tensor(shape, dtype: torch.dtype, gen: torch.Generator, device) -> torch.Tensor:
    if dtype in (torch.float32, torch.float16, torch.bfloat16):
        return torch.randn(shape, generator=gen, device=device).to(dtype)
    if dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        return torch.randn(shape, generator=gen, device=device).clamp_(-2.0, 2.0).to(dtype)
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        return torch.randint(low, high, shape, generator=gen, device=device, dtype=dtype)
    if dtype is torch.bool:
        return torch.randint(0, 2, shape, generator=gen, device=device).bool()
    raise ValueError(f"no random recipe for {dtype}")


def has_random_inputs(definition, wl: WorkloadSpec) -> bool:
    return any(n not in wl.blob_inputs and n not in wl.scalars for n in definition.inputs)


def make_inputs(definition, wl: WorkloadSpec, blobs: Dict[str, torch.Tensor], *, seed: int,
                trial: int, device) -> List[Any]:
    shapes = definition.get_input_shapes(wl.axes)
    recipes = catalog.SPECS[wl.definition].random_inputs
    gen = torch.Generator(device=device).manual_seed(workload_seed(seed, f"{wl.uuid}:trial{trial}"))
    args: List[Any] = []
    for (name, tspec), shape in zip(definition.inputs.items(), shapes):
        if name in wl.blob_inputs:
            args.append(blobs[name].to(device))
        elif name in wl.scalars:
            args.append(wl.scalars[name])
        else:
            dtype = getattr(torch, tspec.dtype.value)
            make = recipes.get(name)
            if shape is None:
                args.append(random_tensor((), dtype, gen, device).item())
            elif make is not None:
                args.append(make(tuple(shape), gen, device))
            else:
                args.append(random_tensor(tuple(shape), dtype, gen, device))
    return args


def poisoned_outputs(definition, axes: Dict[str, int], device) -> List[torch.Tensor]:
    """Output buffers filled with values no correct kernel leaves behind: NaN for floats, the
    most negative integer for integers, so an unwritten element fails the judge."""
    outs = []
    for tspec, shape in zip(definition.outputs.values(), definition.get_output_shapes(axes)):
        dtype = getattr(torch, tspec.dtype.value)
        fill = float("nan") if dtype.is_floating_point else torch.iinfo(dtype).min
        outs.append(torch.full(shape, fill, dtype=dtype, device=device))
    return outs
