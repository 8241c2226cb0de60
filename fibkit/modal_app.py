"""`fibkit modal`: the same `fibkit bench` on a Modal B200 (the contest's GPU).

The app installs the project's dependencies in a CUDA image, ships the local fibkit package
(and, for `--solution`, the packed solution), runs `fibkit bench` remotely and returns its exit
code and results folder, which lands in results/. Needs `pip install fibkit[modal]` and a Modal
account (`modal setup` writes the token this checks for first).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

APP_NAME = "fibkit-bench"
GPU = "B200"


class ModalError(RuntimeError):
    """Modal cannot be used from here (not installed, no token), with the reason."""


def _pip_packages() -> List[str]:
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    # The project's runtime dependencies and its `gpu` extra, pinned once in pyproject.toml.
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"] if pyproject.is_file() else {}
    deps = project.get("dependencies", []) + project.get("optional-dependencies", {}).get("gpu", [])
    return [d for d in deps if ";" not in d]


def build_app():
    import modal

    image = (modal.Image.from_registry("nvidia/cuda:13.0.1-devel-ubuntu24.04", add_python="3.12")
             .pip_install(*_pip_packages())
             .add_local_python_source("fibkit"))
    app = modal.App(APP_NAME, image=image)

    @app.function(gpu=GPU, timeout=3600, serialized=True)
    def bench(argv: List[str], solution_json: Optional[str] = None) -> Tuple[int, Dict[str, bytes]]:
        import tempfile

        from fibkit.cli import main

        with tempfile.TemporaryDirectory() as out:
            if solution_json is not None:
                path = Path(out) / "solution.json"
                path.write_text(solution_json)
                argv = [*argv, "--solution", str(path)]
            code = main(["bench", *argv, "--results", str(Path(out) / "results")])
            root = Path(out) / "results"
            files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
            return code, files

    return app, bench


def check_token() -> None:
    try:
        from modal.config import config
    except ImportError as e:
        raise ModalError("modal is not installed (pip install -e '.[modal]')") from e
    if not (config.get("token_id") and config.get("token_secret")):
        raise ModalError("no Modal token: run `modal setup` (or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET)")


def run_remote(argv: List[str], results: Path, solution=None) -> int:
    """Run `fibkit bench argv` on Modal; returns the remote run's exit code."""
    check_token()
    import modal

    app, bench = build_app()
    with modal.enable_output(), app.run():
        code, files = bench.remote(argv, solution.model_dump_json() if solution is not None else None)
    for rel, data in files.items():
        target = Path(results) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    print(f"{len(files)} result file(s) in {results}; remote exit code {code}")
    return code
