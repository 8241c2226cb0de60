#!/usr/bin/env bash
# One device call for the DSA solutions (issue 14): the CUDA attention's compile-time variants
# side by side (default: the shipped merge against DSA_MERGE=2), the gather ceiling, the DSA
# GPU tests, then a full `fibkit bench` of each DSA definition (3 trials, the contest's
# timing) beside the peers. Each step has its own time limit; logs and
# the results land in $OUT. Run from the repo root on the device (carry .whl):
#   bash benchmarks/device_dsa.sh [VARIANT ...]   (cuda_variants.py's form, e.g. bps2:-DDSA_BLOCKS_PER_SM=2)
set -o pipefail
source scripts/device.sh >/dev/null 2>&1
export CC=/usr/bin/gcc CXX=/usr/bin/g++ MAX_JOBS=16  # the image's /opt/gcc g++ breaks std::regex
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi -L
step() {  # step SECONDS LOG COMMAND...: run it, keep its log, show its tail
  local limit=$1 log=$2; shift 2
  timeout -k 5 "$limit" "$@" 2>&1 | grep -v "^\[" > "$OUT/$log"
  echo "== $log (rc ${PIPESTATUS[0]})"; tail -${TAIL:-12} "$OUT/$log"
}
if [ $# -eq 0 ]; then set -- m1: m2:-DDSA_MERGE=2; fi
step 200 variants.txt python3 benchmarks/cuda_variants.py dsa_attention "$@"
step 60 gather_ceiling.txt python3 benchmarks/gather_ceiling.py
TAIL=6 step 200 pytest_dsa.txt python3 -m pytest -q -p no:cacheprovider tests/ops/test_dsa_attention.py ${DSA_TESTS:-}
TAIL=40 step 150 bench_attention.txt python3 -m fibkit bench dsa_attention --results results
[ -n "$WITH_INDEXER" ] && TAIL=40 step 200 bench_indexer.txt python3 -m fibkit bench dsa_indexer --results results
tar czf "$OUT/results.tgz" results/NVIDIA_H200 2>/dev/null
