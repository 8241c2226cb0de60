"""On-disk cache of reference outputs and reference latencies.

The references are slow next to the solutions (MoE dequantizes every expert), and the inputs of
a (definition, workload, seed, trial) are deterministic, so their reference outputs and timings
are kept between runs. Each entry's key holds a hash of the reference's source and of where the
inputs come from (`data_tag`): for synthesized workloads, the source of the synthesis and input
code and the official workload table; for a dataset folder, its path and its workload file. So
editing any of them serves no stale entry. Latency keys also hold the GPU and the warm-up,
iteration and trial counts. Only references are cached; solutions are always run.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, List, Optional

import torch

DEFAULT_DIR = Path(os.environ.get("FIBKIT_CACHE", Path.home() / ".cache" / "fibkit"))
_PACKAGE = Path(__file__).resolve().parents[1]
# What decides a synthesized workload's inputs: the synthesis code, the random-input recipes
# (inputs.py, and the catalog's per-definition ones) and the official workload table.
_INPUT_CODE = sorted((_PACKAGE / "dataset").glob("*.py")) + [
    _PACKAGE / "dataset" / "official_workloads.json", _PACKAGE / "evaluate" / "inputs.py",
    _PACKAGE / "catalog.py"]


def data_tag(spec, dataset: Optional[Path]) -> str:
    """Where a definition's inputs come from, as a string to hash into cache keys."""
    h = hashlib.sha1()
    if dataset is None:
        for p in dict.fromkeys([*_INPUT_CODE, Path(spec.workloads_file)]):  # a toy's own list too
            h.update(p.read_bytes())
        return "synth:" + h.hexdigest()
    workloads = Path(dataset) / "workloads" / spec.op_type / f"{spec.name}.jsonl"
    h.update(workloads.read_bytes() if workloads.is_file() else b"")
    return f"dataset:{Path(dataset).resolve()}:{h.hexdigest()}"


class ReferenceCache:
    """Reference outputs in <root>/<definition>/<uuid>-s<seed>-t<trial>-<tag>.safetensors and
    latencies in <root>/<definition>/reference_latency.json under "<caller's key>:<tag>", where
    tag = sha1(reference source + data_tag)[:12]. root None: nothing is cached."""

    def __init__(self, root: Optional[Path], reference_source: str, data_tag: str):
        self.root = Path(root) if root else None
        self.tag = hashlib.sha1((reference_source + data_tag).encode()).hexdigest()[:12]

    def _dir(self, definition: str) -> Path:
        d = self.root / definition
        d.mkdir(parents=True, exist_ok=True)
        return d

    def outputs(self, definition: str, uuid: str, seed: int, trial: int,
                compute: Callable[[], List[torch.Tensor]], device) -> List[torch.Tensor]:
        if self.root is None:
            return compute()
        from safetensors.torch import load_file, save_file

        path = self._dir(definition) / f"{uuid}-s{seed}-t{trial}-{self.tag}.safetensors"
        if path.is_file():
            data = load_file(str(path))
            return [data[str(i)].to(device) for i in range(len(data))]
        outs = compute()
        save_file({str(i): t.detach().cpu().contiguous() for i, t in enumerate(outs)}, str(path))
        return outs

    def latency(self, definition: str, key: str, compute: Callable[[], float]) -> float:
        """A reference latency by key (the caller's: workload, seed, GPU, timing counts)."""
        if self.root is None:
            return compute()
        path = self._dir(definition) / "reference_latency.json"
        table = json.loads(path.read_text()) if path.is_file() else {}
        key = f"{key}:{self.tag}"
        if key not in table:
            table[key] = compute()
            path.write_text(json.dumps(table, indent=1))
        return table[key]
