"""Check and time the solution a config.toml describes on this machine's GPU, beside fibkit's
solution and the peers, as the contest judges it (`fibkit bench --solution`). With --interpret
(no GPU needed): check it through the Triton interpreter instead (`fibkit check --interpret`)."""
import sys

import _config

if __name__ == "__main__":
    config, rest = _config.parse(__doc__)
    verb = "check" if "--interpret" in rest else "bench"
    sys.exit(_config.run([verb, "--solution", str(config), *rest]))
