"""Solutions as the contest takes them: a config.toml and its sources, or a solution.json.

Three ways to name a solution, all resolved by `open_solution`:
- a solution folder: config.toml beside its sources (fibkit's own `solutions/<def>/<variant>/`,
  and what `fibkit init` writes);
- a starter-kit project: config.toml at the root, sources in `solution/<language>/` (the
  layout of flashinfer-bench-starter-kit); a config may also name its sources folder with
  `[build] sources = "path"` (relative to the config), as the repository's own config.toml does;
- a packed `solution.json`.

The config is the starter kit's: `[solution] name, definition, author` and `[build] language,
entry_point, destination_passing_style, binding`. `pack` turns it into a flashinfer-bench Solution
with `pack_solution_from_files` (top-level files of the sources folder only), and `load` builds
that Solution with flashinfer-bench's builders, so what we run is what we submit. Every problem
is a SolutionError with a one-line reason.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class SolutionError(ValueError):
    """A solution folder or file that cannot be packed or built, with the reason (one line)."""


REQUIRED = {"solution": ("name", "definition", "author"), "build": ("language", "entry_point")}
OPTIONAL_BUILD = {"destination_passing_style": bool, "binding": str, "target_hardware": list,
                  "dependencies": list, "sources": str}


def one_line(e: BaseException, limit: int = 500) -> str:
    """An exception's message on one line (pydantic's span several; a compiler's log, many),
    cut to `limit` characters."""
    errors = getattr(e, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ()))
            return f"{where + ': ' if where else ''}{first.get('msg', e)}"
        except Exception:
            pass
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def config_path(path: Union[str, Path]) -> Path:
    """The config.toml a path names: the file itself, or the one inside a folder."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.toml"
    if not p.is_file():
        where = path if Path(path).is_dir() else Path(path).parent
        raise SolutionError(f"{where}: no config.toml (a solution folder needs one)")
    return p


def read_config(path: Union[str, Path]) -> dict:
    """The validated config.toml of a folder (or the file itself)."""
    p = config_path(path)
    try:
        cfg = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SolutionError(f"{p}: invalid TOML: {one_line(e)}") from e
    for table, keys in REQUIRED.items():
        if not isinstance(cfg.get(table), dict):
            raise SolutionError(f"{p}: missing [{table}] table")
        for key in keys:
            value = cfg[table].get(key)
            if value is None:
                raise SolutionError(f"{p}: missing [{table}] {key}")
            if not isinstance(value, str) or not value.strip():
                raise SolutionError(f"{p}: [{table}] {key} must be a non-empty string")
    for key, kind in OPTIONAL_BUILD.items():
        if key in cfg["build"] and not isinstance(cfg["build"][key], kind):
            raise SolutionError(f"{p}: [build] {key} must be a {kind.__name__}")
    entry = cfg["build"]["entry_point"]
    if entry.count("::") != 1 or not all(entry.split("::")):
        raise SolutionError(f"{p}: [build] entry_point {entry!r} must be 'file::function', "
                            f"e.g. 'kernel.py::kernel'")
    return cfg


def canonical_definition(name: str, where) -> str:
    """A definition's full name from a full name or alias; a clear error otherwise."""
    from fibkit import catalog

    try:
        return catalog.resolve(name).name
    except KeyError as e:
        raise SolutionError(f"{where}: {e.args[0]}") from e


def sources_dir(path: Union[str, Path], cfg: Optional[dict] = None) -> Path:
    """Where a config's sources are: [build] sources, else the starter kit's
    solution/<language>/ beside the config, else the config's own folder."""
    p = config_path(path)
    cfg = cfg or read_config(p)
    build = cfg["build"]
    if "sources" in build:
        folder = (p.parent / build["sources"]).resolve()
        if not folder.is_dir():
            raise SolutionError(f"{p}: [build] sources {build['sources']!r} is not a folder")
    else:
        starter = p.parent / "solution" / build["language"]
        folder = starter if starter.is_dir() else p.parent
    if folder != p.parent and (folder / "config.toml").is_file():
        inner = read_config(folder)
        for table, key in (("solution", "definition"), ("build", "language")):
            ours, theirs = cfg[table][key], inner[table][key]
            if table == "solution":
                ours, theirs = canonical_definition(ours, p), canonical_definition(theirs, folder)
            if ours != theirs:
                raise SolutionError(f"{p}: [{table}] {key} is {ours!r}, but its sources folder "
                                    f"{folder} says {theirs!r}")
    return folder


def pack(path: Union[str, Path]):
    """The solution a config describes (a folder, a starter-kit project or a config.toml
    file), as a flashinfer_bench.data.Solution with the definition's full name."""
    from flashinfer_bench.agents import pack_solution_from_files
    from flashinfer_bench.data import BuildSpec

    p = config_path(path)
    cfg = read_config(p)
    build, sol = cfg["build"], cfg["solution"]
    definition = canonical_definition(sol["definition"], p)
    folder = sources_dir(p, cfg)
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
    except ValueError as e:
        raise SolutionError(f"{p}: [build] {one_line(e)}") from e
    try:
        return pack_solution_from_files(str(folder), spec, sol["name"], definition, sol["author"],
                                        sol.get("description", ""))
    except ValueError as e:
        raise SolutionError(f"{folder}: {one_line(e)}") from e


def read_solution_json(path: Union[str, Path]):
    from flashinfer_bench.data import Solution

    try:
        sol = Solution.model_validate_json(Path(path).read_text())
    except OSError as e:
        raise SolutionError(f"{path}: cannot read: {e.strerror or e}") from e
    except ValueError as e:
        raise SolutionError(f"{path}: not a valid solution.json: {one_line(e)}") from e
    from fibkit import catalog

    if sol.definition not in catalog.SPECS:
        hint = canonical_definition(sol.definition, path)  # raises for an unknown name
        raise SolutionError(f"{path}: definition must be the full name {hint!r}, "
                            f"not {sol.definition!r}")
    return sol


def open_solution(path: Union[str, Path]):
    """The Solution a path names: a solution.json, a config.toml, or a folder with one."""
    p = Path(path)
    if not p.exists():
        raise SolutionError(f"{path}: no such file or folder")
    if p.is_file() and p.suffix == ".json":
        return read_solution_json(p)
    return pack(p)


def check_output_folder(folder: Union[str, Path], force: bool, error=SolutionError) -> Path:
    """A folder to write a solution into: new, or empty unless force; else `error`."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise error(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise error(f"{out}: folder is not empty (--force writes into it anyway)")
    return out


def unpack(solution_json: Union[str, Path], out_dir: Union[str, Path], force: bool = False) -> Path:
    """Write a solution.json back into a solution folder (sources + config.toml). Refuses an
    existing file, and a non-empty folder unless force."""
    sol = read_solution_json(solution_json)
    out = check_output_folder(out_dir, force)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for src in sol.sources:
            target = out / src.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(src.content)
        (out / "config.toml").write_text(config_text(sol))
    except OSError as e:
        raise SolutionError(f"{out}: cannot write: {e.strerror or e}") from e
    return out


def config_text(sol) -> str:
    """The config.toml that packs back into this Solution."""
    spec = sol.spec
    lines = ["[solution]", f"name = {_toml_str(sol.name)}", f"definition = {_toml_str(sol.definition)}",
             f"author = {_toml_str(sol.author)}"]
    if sol.description:
        lines.append(f"description = {_toml_str(sol.description)}")
    lines += ["", "[build]", f'language = "{spec.language.value}"',
              f"entry_point = {_toml_str(spec.entry_point)}",
              f"destination_passing_style = {str(spec.destination_passing_style).lower()}",
              f"target_hardware = {_toml_list(spec.target_hardware)}"]
    if spec.dependencies:
        lines.append(f"dependencies = {_toml_list(spec.dependencies)}")
    if spec.binding is not None:
        lines.append(f'binding = "{spec.binding.value}"')
    return "\n".join(lines) + "\n"


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _toml_list(items) -> str:
    return "[" + ", ".join(_toml_str(i) for i in items) + "]"


def load(solution, definition):
    """Build a Solution (or the path of one) with flashinfer-bench's builder registry; returns
    the callable (a flashinfer_bench Runnable, whose metadata says whether it takes its
    outputs as arguments)."""
    from flashinfer_bench.compile import BuilderRegistry

    sol = solution if hasattr(solution, "spec") else open_solution(solution)
    if sol.definition != definition.name:
        raise SolutionError(f"solution {sol.name!r} is for {sol.definition}, not {definition.name}")
    try:
        return BuilderRegistry.get_instance().build(definition, sol)
    except Exception as e:  # builders raise their own error types
        raise SolutionError(f"solution {sol.name!r}: build failed: {one_line(e)}") from e
