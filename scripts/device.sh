#!/usr/bin/env bash
# Source this at the start of a command on the GPU device machine (Python 3.12, no network):
# it installs the wheels carried in .whl/ (fetch them here once with
# ../shared/tools/device-wheels.sh .whl) into /tmp/site and puts fibkit on PYTHONPATH.
# Run the CLI there as `python3 -m fibkit ...`.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
export PYTHONUNBUFFERED=1
