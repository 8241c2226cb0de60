#!/usr/bin/env bash
# Build and check the CUDA templates of the given definitions with both bindings, in one device
# call: the slow torch-extension builds run in the background while the tvm-ffi ones are
# checked. One summary line per (definition, binding) in $OUT/summary.txt, logs beside it.
# Usage on the device (carry .whl): bash benchmarks/device_cuda_templates.sh gdn_prefill dsa_attention
source scripts/device.sh >/dev/null 2>&1
export CC=/usr/bin/gcc CXX=/usr/bin/g++ MAX_JOBS=4
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
for d in "$@"; do
  python3 benchmarks/debug_cuda_template.py "$d" torch --build-only > "$OUT/build-$d-torch.log" 2>&1 &
done
for d in "$@"; do
  python3 benchmarks/debug_cuda_template.py "$d" tvm-ffi 2>&1 | grep -v "^\[" > "$OUT/$d-tvm-ffi.log"
  grep -E ": (built|check exit|BUILD FAILED)" "$OUT/$d-tvm-ffi.log" | tee -a "$OUT/summary.txt"
done
wait
for d in "$@"; do
  python3 benchmarks/debug_cuda_template.py "$d" torch 2>&1 | grep -v "^\[" > "$OUT/$d-torch.log"
  grep -E ": (built|check exit|BUILD FAILED)" "$OUT/$d-torch.log" | tee -a "$OUT/summary.txt"
done
