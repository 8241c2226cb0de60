"""The starter-kit scripts' shared part: which config.toml they act on (--config FILE, default
the repository's own), passed to the fibkit CLI as --solution."""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # fibkit from this checkout, installed or not


def parse(description: str):
    """(the config path, the remaining arguments for the fibkit verb)."""
    p = argparse.ArgumentParser(description=description,
                                epilog="Other arguments pass through to the fibkit verb.")
    p.add_argument("--config", default=str(ROOT / "config.toml"),
                   help="the config.toml of the solution (default: this repository's)")
    args, rest = p.parse_known_args()
    return Path(args.config), rest


def run(argv) -> int:
    from fibkit.cli import main

    return main(argv)
