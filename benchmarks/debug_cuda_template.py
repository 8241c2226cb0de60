"""Write the CUDA template of DEF with BINDING, build it with flashinfer-bench's builders (printing
any error in full: the CLI shows one line), then check it on the quick workloads.
Device-only: python3 benchmarks/debug_cuda_template.py DEF BINDING [--build-only]"""
import sys
import time
import traceback

from fibkit import catalog
from fibkit.cli import main
from fibkit.evaluate.solution import pack

alias, binding = sys.argv[1], sys.argv[2]
spec = catalog.resolve(alias)
folder = f"/tmp/cuda-template-{spec.alias}-{binding}"
main(["init", spec.alias, folder, "--language", "cuda", "--binding", binding, "--force"])
from flashinfer_bench.compile import BuilderRegistry  # noqa: E402

t = time.time()
try:
    BuilderRegistry.get_instance().build(catalog.load_definition(spec.name), pack(folder))
    print(f"{spec.alias} {binding}: built in {time.time() - t:.0f} s", flush=True)
except Exception:
    traceback.print_exc()
    print(f"{spec.alias} {binding}: BUILD FAILED", flush=True)
    sys.exit(1)
if "--build-only" not in sys.argv:
    code = main(["check", "--solution", folder, "--quick", "--no-cache"])
    print(f"{spec.alias} {binding}: check exit {code}", flush=True)
    sys.exit(code)
