"""Running Triton solutions on the CPU through Triton's interpreter (TRITON_INTERPRET=1).

The interpreter multiplies raw bf16 bit patterns in tl.dot (triton issue 11584). The fix
belongs to the harness, not to kernels: widen bf16 operands (held as uint16 bit patterns) to
float32 before the interpreter's dot, which then gives exact products.
"""
from __future__ import annotations

import os


def enable() -> None:
    """Switch Triton to the interpreter (before any kernel is compiled) and fix its bf16 dot."""
    os.environ["TRITON_INTERPRET"] = "1"
    patch_bf16_dot()


def patch_bf16_dot() -> None:
    import numpy as np
    from triton.runtime import interpreter

    builder = interpreter.InterpreterBuilder
    if getattr(builder, "_fibkit_patched", False):
        return
    original = builder.create_dot

    def widen(t):
        if t.dtype.is_bf16():
            bits = t.data.astype(np.uint32) << 16
            return interpreter.TensorHandle(bits.view(np.float32), interpreter.tl.float32)
        return t

    def create_dot(self, a, b, d, *args, **kwargs):
        return original(self, widen(a), widen(b), d, *args, **kwargs)

    builder.create_dot = create_dot
    builder._fibkit_patched = True
