"""Pack the solution a config.toml describes into solution.json (default: beside the config)."""
import sys

import _config

if __name__ == "__main__":
    config, rest = _config.parse(__doc__)
    if not any(a in ("-o", "--output") or a.startswith("--output=") for a in rest):
        rest = ["-o", str(config.parent / "solution.json"), *rest]
    sys.exit(_config.run(["pack", "--solution", str(config), *rest]))
