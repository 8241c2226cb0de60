"""Run one DSA kernel configuration a few times on an official workload's inputs, for ncu:

    ncu --kernel-name regex:dsa_split --launch-skip 3 --launch-count 1 \
        python benchmarks/profile_dsa.py attention 8 '{"splits": 16, "block_n": 64}'
    python benchmarks/profile_dsa.py indexer 30x91 '{}'
"""
import importlib
import json
import sys

import torch

from fibkit import catalog
from fibkit.evaluate.inputs import make_inputs, poisoned_outputs
from fibkit.evaluate.workloads import WorkloadSource

NAMES = {"attention": ("dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64", "num_tokens"),
         "indexer": ("dsa_topk_indexer_fp8_h64_d128_topk2048_ps64", "batch_size")}


def main(which, size, config):
    name, axis = NAMES[which]
    spec, definition = catalog.SPECS[name], catalog.load_definition(name)
    source = WorkloadSource(spec, None, seed=0)
    want = [int(x) for x in size.split("x")]
    wl = next(w for w in source.workloads()
              if [w.axes[axis], w.axes.get("max_num_pages", w.axes[axis])][: len(want)] == want)
    args = make_inputs(definition, wl, source.blobs(wl, definition), seed=0, trial=0, device="cuda")
    outs = poisoned_outputs(definition, wl.axes, "cuda")
    mod = importlib.import_module(f"fibkit.solutions.{name}.triton.main")
    for _ in range(5):
        mod.launch(*args, *outs, config=config)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
