"""Shared test set-up: the `gpu` marker, the ../shared official data, and the Triton interpreter
fixes for bf16 (dot, rounding). Oracles, inputs and the judged comparison: fibkit.testing."""
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
    # Without a GPU, Triton kernels run through the interpreter (small sizes only). It must be
    # chosen before any solution module defines its kernels.
    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"
    if os.environ.get("TRITON_INTERPRET") == "1":
        patch_interpreter()


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


def patch_interpreter():
    """The interpreter's bf16 fixes (tl.dot, triton issue 11584; float32 -> bf16 rounding); they
    live in the package so that `fibkit check --interpret` applies them too."""
    from fibkit.evaluate.interpreter import patch

    patch()
