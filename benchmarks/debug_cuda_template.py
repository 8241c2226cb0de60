"""Build the CUDA templates with flashinfer-bench's builders and print any error in full (the
CLI shows one line); then check each on the quick workloads. Device-only debugging aid."""
import sys
import time
import traceback

from fibkit import catalog
from fibkit.cli import main
from fibkit.evaluate.solution import pack

for binding in sys.argv[1:] or ["torch", "tvm-ffi"]:
    folder = f"/tmp/cuda-template-{binding}"
    main(["init", "gdn_decode", folder, "--language", "cuda", "--binding", binding, "--force"])
    from flashinfer_bench.compile import BuilderRegistry

    t = time.time()
    try:
        BuilderRegistry.get_instance().build(catalog.load_definition("gdn_decode"), pack(folder))
        print(f"{binding}: built in {time.time() - t:.0f} s", flush=True)
    except Exception:
        traceback.print_exc()
        continue
    print(f"{binding}: check exit {main(['check', '--solution', folder, '--quick', '--no-cache'])}", flush=True)
