#!/usr/bin/env bash
# Fetch, for the GPU device machine, the wheels FlashInfer's CuTe DSL kernels need (its GDN
# decode peer): nvidia-cutlass-dsl 4.8.1 with its cu13 libraries, cuda-bindings 13,
# cuda-pathfinder and protobuf, about 105 MB. That is more than one device call carries
# (64 MiB, with .whl's 22 MB), so they travel as one tar in parts of 36 MB:
#   .cdsl/MANIFEST       the parts' names and the tar's sha256
#   .cdsl/part-aa ...    carried one per call: carry [".whl", ".cdsl/MANIFEST", ".cdsl/part-aa"]
# scripts/device.sh keeps each carried part in /tmp/cdsl-parts (it survives while the machine
# stays warm) and installs the wheels once all parts are there.
# Usage, from the project root: scripts/cutlass-dsl-wheels.sh   (writes .cdsl/, git-ignored)
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$work/cdsl-wheels" nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1 \
  nvidia-cutlass-dsl-libs-core==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1 "cuda-bindings>=13,<14" \
  cuda-pathfinder protobuf 2>&1 | grep -v -i warning || true
rm -rf .cdsl && mkdir -p .cdsl
tar -C "$work" -cf "$work/cdsl.tar" cdsl-wheels
split -b 36M "$work/cdsl.tar" .cdsl/part-
{ echo "sha256 $(sha256sum "$work/cdsl.tar" | cut -d' ' -f1)"; (cd .cdsl && ls part-*); } > .cdsl/MANIFEST
cat .cdsl/MANIFEST
du -sh .cdsl
