"""Check every prefill launch variant of benchmarks/sweep_gdn.py against the float64 oracle
before timing it, each in its own process (a fault poisons the CUDA context). Prints ok or
the error per variant, then GOOD=<names> for `GDN_VARIANTS=... sweep_gdn.py prefill`."""
import subprocess, sys
sys.path[:0] = ["benchmarks"]
from sweep_gdn import PREFILL_VARIANTS
CODE = r'''
import sys, torch; sys.path[:0] = ["tests", "tests/ops", "benchmarks"]
from sweep_gdn import PREFILL_VARIANTS
from test_gdn_prefill import make_inputs, run_kernel, check
cfg = PREFILL_VARIANTS[sys.argv[1]]
for lengths in ([6], [300, 64, 1], [2107]):
    check(make_inputs(lengths, "cuda", seed=1), cfg, out_rel=1e-2, state_rel=1e-2); torch.cuda.synchronize()
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
