#!/usr/bin/env bash
# One device call for the contestant workflow (issue 12): the GPU tests of the workflow, the
# judge and the CLI (CUDA templates with both bindings, bench --solution), a full
# `bench --solution` of the Triton template beside fibkit's solution and the peers, and the
# flashinfer-bench harness on the same template. Logs and the results folder land in $OUT.
# Run from the repo root on the device: bash benchmarks/device_workflow.sh (carry .whl).
set -o pipefail
source scripts/device.sh
export CC=/usr/bin/gcc CXX=/usr/bin/g++  # the image's /opt/gcc g++ breaks std::regex
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi -L
python3 -m pytest -q -rs tests/test_workflow.py tests/test_evaluate.py tests/test_pack_cli.py 2>&1 \
  | tee "$OUT/pytest_workflow.txt" | tail -25
python3 -m fibkit init gdn_decode /tmp/gdn-decode-template
python3 -m fibkit bench --solution /tmp/gdn-decode-template --results results 2>&1 \
  | tee "$OUT/bench_template.txt" | tail -12
python3 -m fibkit check --solution /tmp/gdn-decode-template --quick --harness flashinfer-bench 2>&1 \
  | tee "$OUT/harness_template.txt" | tail -6
tar czf "$OUT/results_template.tgz" results/NVIDIA_H200/gdn_decode-triton-template
