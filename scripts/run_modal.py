"""Check and time the solution a config.toml describes on a Modal B200 (`fibkit modal
--solution`; needs `pip install -e '.[modal]'` and `modal setup`)."""
import sys

import _config

if __name__ == "__main__":
    config, rest = _config.parse(__doc__)
    sys.exit(_config.run(["modal", "--solution", str(config), *rest]))
