#!/usr/bin/env bash
# On the GPU device machine: start FlashInfer's gdn_prefill JIT build in the background (it
# outlives this call while the machine stays warm), run the prefill GPU tests ($TESTS, none
# when empty), sweep the prefill kernel's variants beside FlashInfer's kernel (if already
# built), then ($FI_WAIT seconds at most) wait for the build and bring the built module back as
# $OUT/gdn_prefill_sm90.so.xz; carried in .fi/, later calls install it as FlashInfer's AOT
# module instead of building again.
source scripts/device.sh
export CC=/usr/bin/gcc CXX=/usr/bin/g++ FLASHINFER_WORKSPACE_BASE=/tmp/fi
aot=/tmp/site/flashinfer/data/aot/gdn_prefill_sm90
if [ -e .fi/gdn_prefill_sm90.so.xz ] && [ ! -e /tmp/fi_build.started ]; then
  mkdir -p $aot && xz -dc .fi/gdn_prefill_sm90.so.xz > $aot/gdn_prefill_sm90.so
  touch /tmp/fi_build.started && echo built > /tmp/fi_build.log
fi
if [ ! -e /tmp/fi_build.started ]; then
  touch /tmp/fi_build.started
  MAX_JOBS=${FI_JOBS:-14} setsid nohup python3 -c "from flashinfer.jit.gdn import gen_gdn_prefill_sm90_module as g; g().build_and_load(); print('built')" \
    > /tmp/fi_build.log 2>&1 < /dev/null &
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
if [ -n "$TESTS" ]; then
  timeout ${TEST_S:-240} python3 -m pytest -q -p no:cacheprovider $TESTS > $OUT/tests.txt 2>&1
  tail -25 $OUT/tests.txt
fi
[ "${SWEEP_S:-300}" -gt 0 ] && timeout ${SWEEP_S:-300} python3 benchmarks/sweep_gdn.py prefill > $OUT/sweep.txt 2>&1
cat $OUT/sweep.txt 2>/dev/null
for _ in $(seq ${FI_WAIT:-0}); do grep -q built /tmp/fi_build.log 2>/dev/null && break; sleep 1; done
echo "--- flashinfer build:"; tail -3 /tmp/fi_build.log 2>/dev/null
if [ "${FI_WAIT:-0}" -gt 0 ] && grep -q built /tmp/fi_build.log 2>/dev/null; then
  so=$(find /tmp/fi -name gdn_prefill_sm90.so | head -1)
  [ -n "$so" ] && xz -T8 -c "$so" > $OUT/gdn_prefill_sm90.so.xz && ls -la "$so" $OUT
fi
