"""Shared test set-up: the `gpu` marker, the ../shared official data, and the Triton interpreter
fix for bf16 dots."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

# The official data beside the checkout; FIBKIT_SHARED points elsewhere (the GPU device machine
# receives only the checkout, so a copy travels there inside it).
SHARED = Path(os.environ.get("FIBKIT_SHARED",
                             Path(__file__).resolve().parents[2] / "shared" / "flashinfer-trace"))


def pytest_configure(config):
    if os.environ.get("TRITON_INTERPRET") == "1":
        patch_interpreter_bf16_dot()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the device: see README)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def official_definition(name: str) -> dict:
    """An official definition JSON from ../shared, or skip with the reason."""
    hits = list(SHARED.glob(f"definitions/*/{name}.json")) if SHARED.is_dir() else []
    if not hits:
        pytest.skip(f"official definitions not found at {SHARED} (../shared is absent)")
    return json.loads(hits[0].read_text())


def official_reference(name: str):
    """The official reference `run` from ../shared, compiled in its own namespace."""
    source = official_definition(name)["reference"]
    namespace: dict = {}
    exec(compile(source, f"<official {name}>", "exec"), namespace)
    return namespace["run"]


def patch_interpreter_bf16_dot():
    """Triton's interpreter multiplies raw bf16 bit patterns in tl.dot (triton issue 11584):
    widen bf16 operands (held as uint16 bit patterns) to float32 before the dot."""
    import numpy as np
    from triton.runtime import interpreter

    builder = interpreter.InterpreterBuilder
    if getattr(builder, "_fibkit_patched", False):
        return
    original = builder.create_dot

    def widen(t):
        if t.dtype.is_bf16():
            bits = t.data.astype(np.uint32) << 16
            return interpreter.TensorHandle(bits.view(np.float32), interpreter.tl.float32)
        return t

    def create_dot(self, a, b, d, *args, **kwargs):
        return original(self, widen(a), widen(b), d, *args, **kwargs)

    builder.create_dot = create_dot
    builder._fibkit_patched = True
