"""The Triton interpreter fixes of fibkit/evaluate/interpreter.py (conftest applies them): bf16
tl.dot is exact after widening, and float32 -> bf16 casts round to nearest even (as torch and
the GPU do)."""
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r'''
import os, sys
os.environ["TRITON_INTERPRET"] = "1"
sys.path.insert(0, sys.argv[1])
import torch, triton, triton.language as tl
from conftest import patch_interpreter

@triton.jit
def dot_kernel(a_ptr, b_ptr, c_ptr, N: tl.constexpr):
    r = tl.arange(0, N)
    a = tl.load(a_ptr + r[:, None] * N + r[None, :])
    b = tl.load(b_ptr + r[:, None] * N + r[None, :])
    tl.store(c_ptr + r[:, None] * N + r[None, :], tl.dot(a, b))


@triton.jit
def cast_kernel(x_ptr, y_ptr, N: tl.constexpr):
    r = tl.arange(0, N)
    tl.store(y_ptr + r, tl.load(x_ptr + r).to(tl.bfloat16))

a, b, c = torch.randn(16, 16).bfloat16(), torch.randn(16, 16).bfloat16(), torch.empty(16, 16)
dot_kernel[(1,)](a, b, c, N=16)
before = (c - a.float() @ b.float()).abs().max().item()
x = torch.randn(1024)
y = torch.empty(1024, dtype=torch.bfloat16)
cast_kernel[(1,)](x, y, N=1024)
cast_before = int((y != x.bfloat16()).sum())
patch_interpreter()
dot_kernel[(1,)](a, b, c, N=16)
after = (c - a.float() @ b.float()).abs().max().item()
cast_kernel[(1,)](x, y, N=1024)
print(before, after, cast_before, int((y != x.bfloat16()).sum()))
'''


def test_bf16_dot_and_cast_exact_after_patch():
    pytest.importorskip("triton")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after, cast_before, cast_after = map(float, out.stdout.split())
    assert before > 1.0  # the interpreter bug is real (raw bit patterns multiplied)
    assert after < 1e-3
    assert cast_before > 100  # truncation: about half the values differ from torch's rounding
    assert cast_after == 0


def test_interpreted_builds_stay_inside_the_block(tmp_path):
    """A solution built for the interpreter is not what a later GPU-mode build of the same
    solution gets (flashinfer-bench caches builds by content in its registry and sys.modules)."""
    import os
    import sys

    from fibkit import catalog
    from fibkit.evaluate.interpreter import interpreting
    from fibkit.evaluate.solution import load, pack
    from fibkit.templates import write_template

    spec = catalog.SPECS["gdn_decode_qk4_v8_d128_k_last"]
    folder = write_template(spec, tmp_path / "t")
    definition = catalog.load_definition(spec.name)
    def built():
        return {m: id(sys.modules[m]) for m in sys.modules if m.startswith("fib_triton_")}

    env, modules = os.environ.get("TRITON_INTERPRET"), built()
    with interpreting():
        inside = load(pack(folder), definition)
        assert built() and not set(built().items()) & set(modules.items())  # its own modules only
    assert os.environ.get("TRITON_INTERPRET") == env
    assert built() == modules  # the block's modules are gone, the earlier ones are back
    assert load(pack(folder), definition) is not inside


PROBE = """
import inspect

import torch
import triton
import triton.language as tl

from fibkit import catalog
from fibkit.cli import main
from fibkit.evaluate.solution import load, pack


@triton.jit
def _fresh_kernel(x_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(x_ptr + offsets, tl.sigmoid(tl.load(x_ptr + offsets, mask=offsets < n)), mask=offsets < n)


def language():
    objs = (tl, tl.core, tl.math, tl.core.tensor, tl.core.dtype)  # (submodules may be imported)
    return {(obj.__name__, k): id(v) for obj in objs for k, v in vars(obj).items()
            if not inspect.ismodule(v)}


spec = catalog.SPECS['gdn_decode_qk4_v8_d128_k_last']
load(pack(spec.solution_dir('triton')), catalog.load_definition(spec.name))
before = language()
code = main(['check', 'gdn_decode', '--interpret', '--variant', 'triton', '--smallest', '1', '--no-cache'])
assert code == 0, code
changed = sorted(k for k in set(before) | set(language()) if before.get(k) != language().get(k))
assert not changed, changed[:10]
if torch.cuda.is_available():  # a kernel first compiled after the interpreted check
    x = torch.zeros(100, device="cuda")
    _fresh_kernel[(1,)](x, 100, BLOCK=128)
    assert torch.allclose(x, torch.full_like(x, 0.5))
"""


def test_interpret_after_triton_was_imported_for_the_gpu(tmp_path):
    """On a GPU host triton is imported with the interpreter off, so its own @jit library
    functions (tl.sigmoid in fibkit's decode kernel) are compiled-mode JITFunctions, which an
    interpreted kernel cannot call. `check --interpret` must work there too, and leave
    triton.language as it found it (Triton 3.6's interpreter patches its builtins in place): a
    fresh process without TRITON_INTERPRET builds fibkit's decode for the GPU first, checks it
    through the interpreter, then (on a GPU) compiles and runs a new kernel."""
    import os
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, str(probe)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_two_interpreted_checks_in_one_process():
    """Each `check --interpret` puts triton.language back as it found it, including the globals
    the interpreter copies into triton.language.standard when it first rewrites tl.sum: the
    second check in a process used to fail there (NameError: interpreter_semantic)."""
    from fibkit.cli import main

    for _ in range(2):
        assert main(["check", "gdn_decode", "--interpret", "--variant", "triton", "--smallest", "1",
                     "--no-cache"]) == 0
