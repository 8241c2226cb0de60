#!/usr/bin/env bash
# Device calls for the DSA solutions (issue 14): the named steps in order, each with its own time
# limit, logs and results in $OUT. Run from the repo root on the device (carry .whl):
#   bash benchmarks/device_dsa.sh STEP...
# Steps:
#   warm-flashinfer      start building FlashInfer's top-k JIT module in the background (setsid:
#                        it outlives the call while the machine stays warm; the bench's
#                        flashinfer-topk peer needs it)
#   attention-variants   the CUDA attention's compile-time variants ($ATTN_VARIANTS, in
#                        cuda_variants.py's form; default: the shipped build alone)
#   indexer-variants     the same for the CUDA indexer ($IDX_VARIANTS)
#   indexer-ncu          each CUDA indexer kernel's own duration under ncu (first of $IDX_VARIANTS,
#                        kernels serialized), and the score kernel's tensor-core and conversion
#                        instruction counts from its SASS
#   gather               benchmarks/gather_ceiling.py
#   attention-tests, indexer-tests   the GPU tests ($DSA_TESTS: extra pytest arguments)
#   attention-bench, indexer-bench   `fibkit bench` (3 trials, the contest's timing) with the peers
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
for s in "$@"; do
  case $s in
    warm-flashinfer)
      setsid nohup python3 -c "import torch, flashinfer
x = torch.randn(2, 4096, device='cuda'); t = torch.arange(4096, device='cuda', dtype=torch.int32).repeat(2, 1)
flashinfer.top_k_page_table_transform(x, t, torch.full((2,), 4096, device='cuda', dtype=torch.int32), 2048)
torch.cuda.synchronize(); print('flashinfer top-k ready')" > /tmp/warm_flashinfer.log 2>&1 < /dev/null &
      echo "== warm-flashinfer started (log /tmp/warm_flashinfer.log)" ;;
    attention-variants) step 200 attention_variants.txt python3 benchmarks/cuda_variants.py dsa_attention ${ATTN_VARIANTS:-base:} ;;
    indexer-variants) step 240 indexer_variants.txt python3 benchmarks/cuda_variants.py dsa_indexer ${IDX_VARIANTS:-base:} ;;
    indexer-ncu)
      v=${IDX_VARIANTS%% *}
      timeout 200 ncu --clock-control none -k regex:'score_kernel|select_kernel' --metrics gpu__time_duration.sum --csv \
        python3 benchmarks/cuda_variants.py dsa_indexer --ncu "$v" > "$OUT/indexer_ncu.csv" 2>&1
      python3 -c "import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10 and r[-3] == 'gpu__time_duration.sum']
for r in rows: print(r[4].split('(')[0], r[8], r[-1], r[-2])" "$OUT/indexer_ncu.csv" | tee "$OUT/indexer_ncu.txt" | head -60
      so=$(ls /tmp/cuda_variants/dsa_topk_indexer_fp8_h64_d128_topk2048_ps64/${v%%:*}/*.so | head -1)
      cuobjdump -sass "$so" 2>/dev/null | grep -oE "(HMMA|QMMA|F2FP|F2F|HMUL2|PRMT|LDS|LDG)[A-Z0-9._]*" | sort | uniq -c | tee "$OUT/indexer_sass.txt" ;;
    gather) step 60 gather_ceiling.txt python3 benchmarks/gather_ceiling.py ;;
    attention-tests) TAIL=6 step 200 attention_tests.txt python3 -m pytest -q -p no:cacheprovider tests/ops/test_dsa_attention.py ${DSA_TESTS:-} ;;
    indexer-tests) TAIL=12 step 300 indexer_tests.txt python3 -m pytest -q -p no:cacheprovider tests/ops/test_dsa_indexer.py ${DSA_TESTS:-} ;;
    attention-bench) TAIL=40 step 150 attention_bench.txt python3 -m fibkit bench dsa_attention --results results ;;
    indexer-bench)
      tail -2 /tmp/warm_flashinfer.log 2>/dev/null
      TAIL=60 step 400 indexer_bench.txt python3 -m fibkit bench dsa_indexer --results results ;;
    *) echo "unknown step $s"; exit 2 ;;
  esac
done
tar czf "$OUT/results.tgz" results/NVIDIA_H200 2>/dev/null
