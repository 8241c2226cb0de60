"""Reads the repository's config.toml for the starter-kit scripts."""
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def cli_args(verb: str) -> list:
    cfg = tomllib.loads((ROOT / "config.toml").read_text())
    sol, run = cfg.get("solution", {}), cfg.get("run", {})
    args = [verb, sol["definition"]]
    if sol.get("variant"):
        args += ["--variant", sol["variant"]]
    if run.get("quick") and verb in ("bench", "modal"):
        args.append("--quick")
    return args
