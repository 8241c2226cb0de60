"""ncu target: the GDN prefill kernel at 61 tokens (one kernel) and 2107 tokens in one sequence
(prepare + walk), twice each (profile the second).

    ncu --kernel-name regex:walk --launch-skip 1 --launch-count 1 python benchmarks/ncu_gdn_prefill.py
"""
import sys

import torch

sys.path[:0] = ["tests", "tests/ops"]
from test_gdn_prefill import make_inputs, run_kernel  # noqa: E402

for lengths in ([61], [2107]):
    args = make_inputs(lengths, "cuda", seed=1)
    for _ in range(2):
        run_kernel(args)
torch.cuda.synchronize()
