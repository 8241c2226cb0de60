"""Benchmark the configured solution on the local GPU, as the contest judges. Extra arguments pass through to `fibkit bench`."""
import sys

from _config import cli_args
from fibkit.cli import main

if __name__ == "__main__":
    sys.exit(main(cli_args("bench") + sys.argv[1:]))
