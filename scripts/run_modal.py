"""Benchmark the configured solution on a Modal B200. Extra arguments pass through to `fibkit modal`."""
import sys

from _config import cli_args
from fibkit.cli import main

if __name__ == "__main__":
    sys.exit(main(cli_args("modal") + sys.argv[1:]))
