#!/usr/bin/env bash
# First GPU run of the CUDA prefill (from the repo root on the device; carry .whl and .fi):
# its GPU checks, then beside fibkit's Triton prefill and FlashInfer's kernel on all 100
# official workloads. Logs land in $OUT.
source scripts/device.sh >/dev/null 2>&1
export CC=/usr/bin/gcc CXX=/usr/bin/g++  # the image's /opt/gcc g++ breaks std::regex
aot=/tmp/site/flashinfer/data/aot/gdn_prefill_sm90
[ -e .fi/gdn_prefill_sm90.so.xz ] && mkdir -p $aot && xz -dc .fi/gdn_prefill_sm90.so.xz > $aot/gdn_prefill_sm90.so
timeout ${TEST_S:-300} python3 -m pytest -q -x -p no:cacheprovider wip/gdn_prefill_cuda/test_gpu.py > $OUT/tests_cuda.txt 2>&1
tail -15 $OUT/tests_cuda.txt
timeout ${COMPARE_S:-240} python3 benchmarks/compare_gdn_prefill.py triton wip/gdn_prefill_cuda/solution > $OUT/compare.txt 2>&1
tail -14 $OUT/compare.txt
