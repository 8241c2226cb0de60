"""Solution folders: config.toml + top-level sources, packed exactly as submitted.

A solution folder is what the contest judges: `pack` turns it into a flashinfer-bench Solution
with `pack_solution_from_files` (top-level files only), and `load` builds that same Solution
with flashinfer-bench's builders, so what we run is what we submit.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class SolutionError(ValueError):
    """A solution folder or file that cannot be packed or built, with the reason."""


REQUIRED = {"solution": ("name", "definition", "author"), "build": ("language", "entry_point")}


def read_config(folder: Union[str, Path]) -> dict:
    path = Path(folder) / "config.toml"
    if not path.is_file():
        raise SolutionError(f"{folder}: no config.toml (a solution folder needs one)")
    try:
        cfg = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SolutionError(f"{path}: {e}") from e
    for table, keys in REQUIRED.items():
        for key in keys:
            if key not in cfg.get(table, {}):
                raise SolutionError(f"{path}: missing [{table}] {key}")
    return cfg


def pack(folder: Union[str, Path]):
    """The folder as a flashinfer_bench.data.Solution."""
    from flashinfer_bench.agents import pack_solution_from_files
    from flashinfer_bench.data import BuildSpec

    cfg = read_config(folder)
    build = cfg["build"]
    spec_fields = {
        "language": build["language"],
        "target_hardware": build.get("target_hardware", ["cuda"]),
        "entry_point": build["entry_point"],
        "dependencies": build.get("dependencies", []),
        "destination_passing_style": build.get("destination_passing_style", True),
    }
    if "binding" in build:
        spec_fields["binding"] = build["binding"]
    try:
        spec = BuildSpec(**spec_fields)
        sol = cfg["solution"]
        return pack_solution_from_files(str(folder), spec, sol["name"], sol["definition"],
                                        sol["author"], sol.get("description", ""))
    except ValueError as e:
        raise SolutionError(f"{folder}: {e}") from e


def unpack(solution_json: Union[str, Path], out_dir: Union[str, Path]) -> Path:
    """Write a solution.json back into a folder (sources + config.toml)."""
    from flashinfer_bench.data import Solution

    try:
        sol = Solution.model_validate_json(Path(solution_json).read_text())
    except (OSError, ValueError) as e:
        raise SolutionError(f"{solution_json}: not a valid solution.json: {e}") from e
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for src in sol.sources:
        target = out / src.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(src.content)
    spec = sol.spec
    lines = ["[solution]", f'name = "{sol.name}"', f'definition = "{sol.definition}"',
             f'author = "{sol.author}"']
    if sol.description:
        lines.append(f"description = {_toml_str(sol.description)}")
    lines += ["", "[build]", f'language = "{spec.language.value}"',
              f'entry_point = "{spec.entry_point}"',
              f"destination_passing_style = {str(spec.destination_passing_style).lower()}",
              f"target_hardware = {_toml_list(spec.target_hardware)}"]
    if spec.dependencies:
        lines.append(f"dependencies = {_toml_list(spec.dependencies)}")
    if spec.binding is not None:
        lines.append(f'binding = "{spec.binding.value}"')
    (out / "config.toml").write_text("\n".join(lines) + "\n")
    return out


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _toml_list(items) -> str:
    return "[" + ", ".join(_toml_str(i) for i in items) + "]"


def load(folder: Union[str, Path], definition) -> Callable:
    """Build the packed solution with flashinfer-bench's builder registry; returns the
    callable (a flashinfer_bench Runnable) and its destination-passing flag."""
    from flashinfer_bench.compile import BuilderRegistry

    sol = pack(folder)
    if sol.definition != definition.name:
        raise SolutionError(f"{folder}: solution is for {sol.definition}, not {definition.name}")
    try:
        runnable = BuilderRegistry.get_instance().build(definition, sol)
    except Exception as e:  # builders raise their own error types
        raise SolutionError(f"{folder}: build failed: {e}") from e
    return runnable
