"""The workloads of a definition and their stored inputs, and which of them a run takes.

From a dataset folder (a real one, or one `fibkit dataset` wrote) when given, else the official
list with synthesized blobs. Stored inputs are checked against the definition's shapes and dtypes
as the contest's loader checks them; a dataset that cannot be read is a DatasetError with a
one-line reason.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import torch

from fibkit.catalog import DefSpec
from fibkit.dataset import WorkloadSpec, official_workloads
from fibkit.dataset.writer import blob_tensors, workload_record


class DatasetError(ValueError):
    """A dataset folder, workload line or blob that cannot be used, with the reason."""


class WorkloadSource:
    def __init__(self, spec: DefSpec, dataset: Optional[Path], seed: int):
        self.spec, self.dataset, self.seed = spec, dataset, seed
        self._records: Dict[str, dict] = {}

    def workloads(self) -> List[WorkloadSpec]:
        if self.dataset is None:
            out = official_workloads(self.spec.name)
            self._records = {w.uuid: workload_record(w)["workload"] for w in out}
            return out
        path = self.dataset / "workloads" / self.spec.op_type / f"{self.spec.name}.jsonl"
        if not path.is_file():
            raise DatasetError(f"dataset {self.dataset} has no {path.relative_to(self.dataset)}")
        out = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                w = json.loads(line)["workload"]
                blobs = tuple(n for n, i in w["inputs"].items() if i["type"] == "safetensors")
                scalars = {n: i["value"] for n, i in w["inputs"].items() if i["type"] == "scalar"}
                spec = WorkloadSpec(self.spec.name, w["uuid"], dict(w["axes"]), scalars, blobs)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise DatasetError(f"{path}:{number}: not a workload record ({type(e).__name__}: {e})") from e
            self._records[w["uuid"]] = w
            out.append(spec)
        return out

    def record(self, wl: WorkloadSpec) -> dict:
        """The workload as a FlashInfer-Trace `workload` object (for trace records)."""
        return self._records.get(wl.uuid) or workload_record(wl)["workload"]

    def blobs(self, wl: WorkloadSpec, definition) -> Dict[str, torch.Tensor]:
        if self.dataset is None:
            return blob_tensors(wl, self.seed)
        from safetensors.torch import load_file

        loaded: Dict[str, dict] = {}
        shapes = dict(zip(definition.inputs, definition.get_input_shapes(wl.axes)))
        out = {}
        for name in wl.blob_inputs:
            entry = self._records[wl.uuid]["inputs"][name]
            rel, key = entry.get("path"), entry.get("tensor_key", name)
            file = self.dataset / rel if rel else None
            if file is None or not file.is_file():
                raise DatasetError(f"workload {wl.uuid}: {name}: blob {rel} not found in {self.dataset}")
            if rel not in loaded:
                try:
                    loaded[rel] = load_file(str(file))
                except Exception as e:  # safetensors raises its own error types
                    raise DatasetError(f"{file}: unreadable safetensors blob ({type(e).__name__}: {e})") from e
            if key not in loaded[rel]:
                raise DatasetError(f"{file}: no tensor {key!r} (for input {name})")
            t = loaded[rel][key]
            want_dtype = getattr(torch, definition.inputs[name].dtype.value)
            if list(t.shape) != list(shapes[name]) or t.dtype != want_dtype:
                raise DatasetError(f"workload {wl.uuid}: stored {name} is {t.dtype} {list(t.shape)}, "
                                   f"the definition wants {want_dtype} {list(shapes[name])}")
            out[name] = t
        return out


def select(spec: DefSpec, workloads: List[WorkloadSpec], opts) -> List[WorkloadSpec]:
    """The workloads a run takes: the N smallest (interpreter checks), a representative
    --quick subset, the first --limit, and this process's shard."""
    def size(w):
        return tuple(w.axes.get(a, 0) for a in [spec.size_axis, *sorted(w.axes)])

    if opts.smallest:
        workloads = sorted(workloads, key=size)[: opts.smallest]
    if opts.quick:
        ordered = sorted(workloads, key=size)
        n = min(spec.quick_count, len(ordered))
        picks = sorted({round(i * (len(ordered) - 1) / max(n - 1, 1)) for i in range(n)})
        workloads = [ordered[i] for i in picks]
    workloads = workloads[: opts.limit] if opts.limit else workloads
    return workloads[opts.shard[0]::opts.shard[1]] if opts.shard else workloads
