"""Spreading `fibkit bench` / `check` over the GPUs of one host: workload i of each definition
goes to process i mod N, each process owns one device, and the rows come back merged in
workload order, as one process would have written them.

Each process times only its own device (CUPTI spans are per device and process), so per-
workload figures match a one-GPU run up to the host noise of N processes sharing the CPU.
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import List, Sequence

from fibkit import catalog
from fibkit.evaluate.runner import RunOptions, evaluate_definition
from fibkit.evaluate.workloads import WorkloadSource, select


def _shard(index: int, count: int, names: Sequence[str], opts: RunOptions, device: str) -> List[dict]:
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)
    shard_opts = dataclasses.replace(opts, shard=(index, count), device=device)
    return [evaluate_definition(catalog.SPECS[name], shard_opts) for name in names]


def evaluate_spread(specs, opts: RunOptions, devices: Sequence[str]) -> List[dict]:
    """evaluate_definition for each spec, workloads dealt round-robin over `devices`."""
    names = [s.name for s in specs]
    with ProcessPoolExecutor(len(devices), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_shard, i, len(devices), names, opts, d) for i, d in enumerate(devices)]
        shards = [f.result() for f in futures]
    merged = []
    for k, spec in enumerate(specs):
        order = [w.uuid for w in select(spec, WorkloadSource(spec, opts.dataset, opts.seed).workloads(),
                                        dataclasses.replace(opts, shard=None))]
        result = dict(shards[0][k])
        rows = [row for shard in shards for row in shard[k]["workloads"]]
        result["workloads"] = sorted(rows, key=lambda row: order.index(row["uuid"]))
        result["_traces"] = sorted((t for shard in shards for t in shard[k]["_traces"]),
                                   key=lambda t: order.index(t["workload"]["uuid"]))
        result["devices"] = list(devices)
        merged.append(result)
    return merged
