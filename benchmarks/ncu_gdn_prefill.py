"""ncu target: the GDN prefill kernel at 61 tokens (one kernel) and 2107 tokens in one sequence
(prepare + walk), twice each (profile the second).

    ncu --kernel-name regex:walk --launch-skip 1 --launch-count 1 python benchmarks/ncu_gdn_prefill.py
"""
import torch

from fibkit.testing import gdn_prefill_inputs, poisoned, solution_module

NAME = "gdn_prefill_qk4_v8_d128_k_last"
for lengths in ([61], [2107]):
    args = gdn_prefill_inputs(lengths, "cuda", seed=1)
    outs = poisoned(NAME, {"total_seq_len": sum(lengths), "num_seqs": len(lengths)}, "cuda")
    for _ in range(2):
        solution_module(NAME, "triton").run(*args, *outs)
torch.cuda.synchronize()
