"""Check every prefill launch variant of benchmarks/sweep_gdn.py against the float64 oracle
before timing it, each in its own process (a fault poisons the CUDA context). Prints ok or
the error per variant, then GOOD=<names> for `GDN_VARIANTS=... sweep_gdn.py prefill`."""
import subprocess
import sys

sys.path[:0] = ["benchmarks"]
from sweep_gdn import PREFILL_VARIANTS  # noqa: E402

CODE = r'''
import sys, torch; sys.path[:0] = ["benchmarks"]
from sweep_gdn import PREFILL_VARIANTS
from fibkit.testing import gdn_oracle, gdn_prefill_inputs, max_error_of_max, poisoned, solution_module
cfg = PREFILL_VARIANTS[sys.argv[1]]
name = "gdn_prefill_qk4_v8_d128_k_last"
for lengths in ([6], [300, 64, 1], [2107]):
    args = gdn_prefill_inputs(lengths, "cuda", seed=1)
    outs = poisoned(name, {"total_seq_len": sum(lengths), "num_seqs": len(lengths)}, "cuda")
    solution_module(name, "triton").launch(*args, *outs, config=cfg)
    assert all(max_error_of_max(o, r) < 1e-2 for o, r in zip(outs, gdn_oracle(*args)))
print("ok")
'''
good = []
for name in PREFILL_VARIANTS:
    r = subprocess.run([sys.executable, "-c", CODE, name], capture_output=True, text=True, timeout=120)
    last = (r.stdout + r.stderr).strip().splitlines()[-1:] or ["?"]
    print(f"{name}: {last[0][:200]}", flush=True)
    if r.returncode == 0:
        good.append(name)
print("GOOD=" + ",".join(good))
