#!/usr/bin/env bash
# Source this at the start of a command on the GPU device machine (Python 3.12, no network):
# it installs the wheels carried in .whl/ (fetch them here once with
# ../shared/tools/device-wheels.sh .whl) into /tmp/site and puts fibkit on PYTHONPATH.
# Run the CLI there as `python3 -m fibkit ...`.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
export PYTHONUNBUFFERED=1

# FlashInfer's CuTe DSL wheels (scripts/cutlass-dsl-wheels.sh), carried in parts over several
# calls: keep this call's parts, install once the MANIFEST's parts are all here. pip --target
# does not run the wheels' .pth, so their dsl_packages folder goes on the path by hand.
if [ -f .cdsl/MANIFEST ] && [ ! -d /tmp/site/nvidia_cutlass_dsl ]; then
  mkdir -p /tmp/cdsl-parts && cp .cdsl/part-* /tmp/cdsl-parts/ 2>/dev/null || true
  missing=$(tail -n +2 .cdsl/MANIFEST | while read -r p; do [ -f "/tmp/cdsl-parts/$p" ] || echo "$p"; done)
  if [ -z "$missing" ]; then
    (cd /tmp/cdsl-parts && cat $(tail -n +2 "$OLDPWD/.cdsl/MANIFEST") > /tmp/cdsl.tar)
    if [ "sha256 $(sha256sum /tmp/cdsl.tar | cut -d' ' -f1)" = "$(head -1 .cdsl/MANIFEST)" ]; then
      tar -C /tmp -xf /tmp/cdsl.tar && python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --target /tmp/site /tmp/cdsl-wheels/*.whl && echo "device.sh: cutlass-dsl installed"
    else
      echo "device.sh: the cutlass-dsl parts do not add up to the MANIFEST's tar; not installed" >&2
    fi
  else
    echo "device.sh: cutlass-dsl parts still to carry: $(echo $missing)" >&2
  fi
fi
if [ -d /tmp/site/nvidia_cutlass_dsl/dsl_packages ]; then
  export PYTHONPATH=/tmp/site/nvidia_cutlass_dsl/dsl_packages:$PYTHONPATH
fi
