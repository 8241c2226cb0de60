"""The official workloads (axes kept compactly in official_workloads.json), realistic synthesis
of the inputs the official dataset stores as safetensors, and the TraceSet writer."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Union

DATASET_ENV = "FIB_DATASET_PATH"


@dataclass(frozen=True)
class WorkloadSpec:
    """One official workload: its uuid, var-axis values, scalar inputs, and which inputs the
    official set reads from a safetensors blob (the rest are random)."""

    definition: str
    uuid: str
    axes: Dict[str, int]
    scalars: Dict[str, Union[int, float]]
    blob_inputs: tuple


@lru_cache(maxsize=None)
def _table(path: Path) -> dict:
    return json.loads(path.read_text())


def official_workloads(definition: str) -> List[WorkloadSpec]:
    """The definition's workloads, from the list its catalog entry names."""
    from fibkit import catalog

    entry = _table(catalog.SPECS[definition].workloads_file)[definition]
    var_axes, scalar_names = entry["var_axes"], entry["scalar_inputs"]
    out = []
    for row in entry["workloads"]:
        uuid, rest = row[0], row[1:]
        axes = dict(zip(var_axes, rest[: len(var_axes)]))
        scalars = dict(zip(scalar_names, rest[len(var_axes):]))
        out.append(WorkloadSpec(definition, uuid, axes, scalars, tuple(entry["blob_inputs"])))
    return out


def dataset_path(explicit: Optional[str] = None) -> Optional[Path]:
    """A real (or previously written) dataset to use instead of synthesizing: --dataset, else
    FIB_DATASET_PATH, else None."""
    path = explicit or os.environ.get(DATASET_ENV)
    return Path(path) if path else None
