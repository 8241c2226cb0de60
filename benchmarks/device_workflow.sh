#!/usr/bin/env bash
# One device call for the contestant workflow (issue 12): the GPU tests of the workflow, the
# judge and the CLI (CUDA templates with both bindings, bench --solution), a full
# `bench --solution` of the Triton template beside fibkit's solution and the peers, and the
# flashinfer-bench harness on the same template. Each step has its own time limit; logs and
# the results folder land in $OUT. Run from the repo root on the device (carry .whl):
#   bash benchmarks/device_workflow.sh
set -o pipefail
source scripts/device.sh >/dev/null 2>&1
export CC=/usr/bin/gcc CXX=/usr/bin/g++  # the image's /opt/gcc g++ breaks std::regex
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi -L
timeout -k 5 260 python3 -m pytest -v --durations=8 -p no:cacheprovider \
  tests/test_workflow.py tests/test_evaluate.py tests/test_pack_cli.py 2>&1 \
  | grep -v "^\[" > "$OUT/pytest_workflow.txt"
grep -E "passed|failed|FAILED|Error" "$OUT/pytest_workflow.txt" | tail -8
python3 -m fibkit init gdn_decode /tmp/gdn-decode-template --force >/dev/null
timeout -k 5 200 python3 -m fibkit bench --solution /tmp/gdn-decode-template --results results 2>&1 \
  | grep -v "^\[" > "$OUT/bench_template.txt"
tail -4 "$OUT/bench_template.txt"
timeout -k 5 150 python3 -m fibkit check --solution /tmp/gdn-decode-template --quick --harness flashinfer-bench 2>&1 \
  | grep -v "^\[" > "$OUT/harness_template.txt"
tail -4 "$OUT/harness_template.txt"
tar czf "$OUT/results_template.tgz" results/NVIDIA_H200/gdn_decode-triton-template
