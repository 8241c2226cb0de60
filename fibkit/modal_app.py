"""`fibkit modal`: the same `fibkit bench` on a Modal B200 (the contest's GPU).

The app installs the project's dependencies in a CUDA image, ships the local fibkit package,
runs `fibkit bench` remotely and returns the results folder, which lands in results/<gpu>/.
Needs `pip install fibkit[modal]` and a Modal account (`modal setup`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

APP_NAME = "fibkit-bench"
GPU = "B200"
PIP = ["torch", "triton", "flashinfer-bench==0.1.2", "flashinfer-python==0.6.7", "cupti-python>=13",
       "safetensors", "numpy", "tqdm", "matplotlib", "fla-core==0.6.0"]


def build_app():
    import modal

    image = (modal.Image.from_registry("nvidia/cuda:13.0.1-devel-ubuntu24.04", add_python="3.12")
             .pip_install(*PIP)
             .add_local_python_source("fibkit"))
    app = modal.App(APP_NAME, image=image)

    @app.function(gpu=GPU, timeout=3600, serialized=True)
    def bench(argv: List[str]) -> Dict[str, bytes]:
        import tempfile

        from fibkit.cli import main

        with tempfile.TemporaryDirectory() as out:
            main(["bench", *argv, "--results", out])
            return {str(p.relative_to(out)): p.read_bytes() for p in Path(out).rglob("*") if p.is_file()}

    return app, bench


def run_remote(argv: List[str], results: Path) -> int:
    import modal

    app, bench = build_app()
    with modal.enable_output(), app.run():
        files = bench.remote(argv)
    for rel, data in files.items():
        target = Path(results) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    print(f"{len(files)} result file(s) in {results}")
    return 0
