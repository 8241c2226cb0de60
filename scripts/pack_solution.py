"""Pack the configured solution folder into solution.json. Extra arguments pass through to `fibkit pack`."""
import sys

from _config import cli_args
from fibkit.cli import main

if __name__ == "__main__":
    sys.exit(main(cli_args("pack") + sys.argv[1:]))
