"""Synthesis entry point and the FlashInfer-Trace folder writer.

`blob_tensors` is the single place that makes a workload's stored inputs: `fibkit dataset`
writes them to safetensors, and the evaluator calls it directly when no dataset folder is given
(same seed, same tensors), so the two never disagree.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, Iterable, Optional

import torch

from fibkit import catalog
from fibkit.dataset import WorkloadSpec, official_workloads


def workload_seed(seed: int, uuid: str) -> int:
    digest = hashlib.sha256(f"{seed}:{uuid}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def blob_tensors(wl: WorkloadSpec, seed: int = 0) -> Dict[str, torch.Tensor]:
    """The inputs the official set stores as safetensors for this workload, synthesized on the
    CPU from (seed, uuid), so they are the same on every machine."""
    spec = catalog.SPECS[wl.definition]
    gen = torch.Generator(device="cpu").manual_seed(workload_seed(seed, wl.uuid))
    tensors = spec.synthesize(wl.axes, gen, "cpu")
    missing = set(wl.blob_inputs) - set(tensors)
    if missing:
        raise RuntimeError(f"{wl.definition}: synthesis lacks {sorted(missing)}")
    return {name: tensors[name].contiguous() for name in wl.blob_inputs}


def blob_relpath(wl: WorkloadSpec) -> str:
    spec = catalog.SPECS[wl.definition]
    return f"./blob/workloads/{spec.op_type}/{wl.definition}/{wl.definition}_{wl.uuid}.safetensors"


def workload_record(wl: WorkloadSpec) -> dict:
    """One line of workloads/<op_type>/<definition>.jsonl, in the official format."""
    definition = catalog.definition_dict(wl.definition)
    inputs = {}
    for name in definition["inputs"]:
        if name in wl.blob_inputs:
            inputs[name] = {"type": "safetensors", "path": blob_relpath(wl), "tensor_key": name}
        elif name in wl.scalars:
            inputs[name] = {"type": "scalar", "value": wl.scalars[name]}
        else:
            inputs[name] = {"type": "random"}
    return {"definition": wl.definition, "solution": None,
            "workload": {"uuid": wl.uuid, "axes": dict(wl.axes), "inputs": inputs},
            "evaluation": None}


def write_dataset(out: Path, seed: int = 0, definitions: Optional[Iterable[str]] = None,
                  limit: Optional[int] = None, uuids: Optional[set] = None, progress=None) -> int:
    """Write a complete FlashInfer-Trace folder (definitions/, workloads/, blob/) and return the
    number of workloads written. `limit` keeps the first N workloads of each definition and
    `uuids` only those workloads (both for tests and one-workload tools)."""
    from safetensors.torch import save_file

    out = Path(out)
    names = [catalog.resolve(d).name for d in definitions] if definitions else list(catalog.SPECS)
    jobs = [(name, [w for w in official_workloads(name) if uuids is None or w.uuid in uuids][:limit])
            for name in names]
    total = sum(len(w) for _, w in jobs)
    bar = progress(total=total, desc="dataset", unit="workload") if progress else None
    for name, workloads in jobs:
        spec = catalog.SPECS[name]
        def_path = out / "definitions" / spec.op_type / f"{name}.json"
        def_path.parent.mkdir(parents=True, exist_ok=True)
        def_path.write_text(json.dumps(catalog.definition_dict(name), indent=2) + "\n")
        lines = []
        for wl in workloads:
            blob_path = out / blob_relpath(wl)
            blob_path.parent.mkdir(parents=True, exist_ok=True)
            save_file(blob_tensors(wl, seed), str(blob_path))
            lines.append(json.dumps(workload_record(wl)))
            if bar:
                bar.update(1)
        wl_path = out / "workloads" / spec.op_type / f"{name}.jsonl"
        wl_path.parent.mkdir(parents=True, exist_ok=True)
        wl_path.write_text("\n".join(lines) + "\n")
    if bar:
        bar.close()
    return total
