"""Running Triton solutions on the CPU through Triton's interpreter (TRITON_INTERPRET=1).

Two interpreter bf16 bugs, fixed in the harness, not in kernels:
- tl.dot multiplies raw bf16 bit patterns (triton issue 11584): widen bf16 operands (held as
  uint16 bit patterns) to float32 before the interpreter's dot, which then gives exact products;
- float32 -> bf16 casts truncate, where the GPU rounds to nearest even: a bf16 intermediate
  then carries twice the GPU's error, biased toward zero. Round to nearest even instead.
"""
from __future__ import annotations

import os
from contextlib import contextmanager


def enable() -> None:
    """Switch Triton to the interpreter (before any kernel is compiled) and fix its bf16."""
    os.environ["TRITON_INTERPRET"] = "1"
    patch()


@contextmanager
def interpreting():
    """Kernels defined inside the block run through the interpreter; the environment is put
    back after it, so kernels defined later in the same process compile for the GPU again.
    flashinfer-bench caches a built solution twice, by content: in its builder registry and as
    an imported module (`fib_python_*`, `fib_triton_*` in sys.modules). The block gets empty
    caches of its own, so no GPU build is reused inside it and none of its interpreted builds
    outside it (an interpreted kernel fed GPU tensors runs, but thousands of times slower)."""
    import sys

    from flashinfer_bench.compile import BuilderRegistry
    from triton.runtime.interpreter import InterpretedFunction

    def built(name: str) -> bool:
        return name.startswith(("fib_python_", "fib_triton_"))

    registry = BuilderRegistry.get_instance()
    before = os.environ.get("TRITON_INTERPRET")
    saved, registry._cache = registry._cache, {}
    saved_modules = {m: sys.modules.pop(m) for m in [m for m in sys.modules if built(m)]}
    language = _language_snapshot()
    # The interpreter rewrites each @jit function once per process (a class-wide cache) and, the
    # first time, copies its own globals (interpreter_semantic, ...) into the function's module;
    # _restore takes those out again, so the functions first rewritten inside the block must be
    # rewritten again next time (else: NameError: interpreter_semantic in triton.language).
    rewritten = dict(InterpretedFunction.rewritten_fn)
    enable()
    _interpret_language()
    try:
        yield
    finally:
        # Put triton.language back as it was: the swapped library functions, and the builtins
        # that Triton 3.6's interpreter patches in place on every interpreted call and never
        # restores (a kernel compiled for the GPU afterwards would fail at its first tl.*).
        _restore(language)
        InterpretedFunction.rewritten_fn.clear()
        InterpretedFunction.rewritten_fn.update(rewritten)
        # Drop the interpreted builds without their cleaners: those delete build folders on
        # disk that another process may be importing from the same cache path.
        registry._cache = saved
        for m in [m for m in sys.modules if built(m)]:
            del sys.modules[m]
        sys.modules.update(saved_modules)
        if before is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = before


def _language_objects() -> list:
    """triton.language's modules and the classes whose members the interpreter patches."""
    import sys

    import triton.language as tl

    modules = [m for n, m in list(sys.modules.items())
               if m is not None and (n == "triton.language" or n.startswith("triton.language."))]
    # tl.core's classes: tensor's operators, tensor_descriptor_base's builtins, dtype.to_ir
    classes = [v for v in vars(tl.core).values()
               if isinstance(v, type) and v.__module__.startswith("triton.language")]
    return modules + classes


def _language_snapshot() -> list:
    return [(obj, dict(vars(obj))) for obj in _language_objects()]


def _restore(snapshot: list) -> None:
    """Each object's attributes back to the snapshot (added ones removed, but for submodules
    imported meanwhile, which stay bound to their package)."""
    import inspect

    for obj, saved in snapshot:
        current = dict(vars(obj))
        for name in [n for n in current if n not in saved and not inspect.ismodule(current[n])]:
            try:
                delattr(obj, name)
            except (AttributeError, TypeError):
                pass
        for name, value in saved.items():
            if current.get(name) is not value:
                try:
                    setattr(obj, name, value)
                except (AttributeError, TypeError):  # read-only entries of a class dict
                    pass


def _interpret_language() -> None:
    """Triton's own @jit library functions (tl.sigmoid, tl.max, tl.cdiv, ...) are JITFunctions
    when triton was imported with the interpreter off, and an interpreted kernel cannot call
    them ("Cannot call @triton.jit'd outside of the scope of a kernel"). Swap each for an
    interpreted twin (interpreting() puts the originals back)."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    for module in _language_objects():
        for attr, value in list(vars(module).items()):
            if isinstance(value, JITFunction):
                setattr(module, attr, InterpretedFunction(value.fn))


def patch() -> None:
    patch_bf16_dot()
    patch_bf16_cast()


def _patch_builder(method: str, wrap) -> None:
    """Replace InterpreterBuilder.<method> with wrap(original), once per process."""
    from triton.runtime import interpreter

    builder = interpreter.InterpreterBuilder
    flag = f"_fibkit_patched_{method}"
    if not getattr(builder, flag, False):
        setattr(builder, method, wrap(getattr(builder, method)))
        setattr(builder, flag, True)


def patch_bf16_dot() -> None:
    """bf16 operands of tl.dot widened to fp32 first (numpy has no bf16 matmul; triton issue
    11584): the products are then exact, as on the tensor cores."""
    import numpy as np
    from triton.runtime import interpreter

    def widen(t):
        if t.dtype.is_bf16():
            bits = t.data.astype(np.uint32) << 16
            return interpreter.TensorHandle(bits.view(np.float32), interpreter.tl.float32)
        return t

    def wrap(original):
        def create_dot(self, a, b, d, *args, **kwargs):
            return original(self, widen(a), widen(b), d, *args, **kwargs)
        return create_dot

    _patch_builder("create_dot", wrap)


def patch_bf16_cast() -> None:
    """float32 -> bf16 casts round to nearest even, as torch and the GPU do."""
    import numpy as np
    from triton.runtime import interpreter

    tl = interpreter.tl

    def wrap(original):
        def cast_impl(self, src, dst_type):
            if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
                bits = src.data.astype(np.float32).view(np.uint32).astype(np.uint64)
                rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
                rounded[np.isnan(src.data)] = 0x7FC0
                return interpreter.TensorHandle(rounded, tl.bfloat16)
            return original(self, src, dst_type)
        return cast_impl

    _patch_builder("cast_impl", wrap)
