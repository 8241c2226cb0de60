"""`fibkit init`: a starting solution folder for a definition, correct as written.

A folder holds config.toml (the starter kit's format) and the kernel:
- Triton (every definition): kernel.py. `kernel` computes the outputs with PyTorch, following
  the definition's reference (fibkit's vectorized one, written into the file), then writes each
  output with one Triton copy kernel. Replace the PyTorch part with your own kernels.
- CUDA (the definitions in `CUDA_KERNELS`: all but MoE, whose naive form would stream each
  expert's 44 MB of weights once per token): kernel.cu, a plain CUDA kernel (float32
  arithmetic, one block per output row group) with its binding: `torch` (a PyTorch C++
  extension, pybind11) or `tvm-ffi` (TVM FFI's exported typed function).
Both take their outputs as arguments (destination passing), in definition order after the
inputs; the docstring lists every input and output with its dtype and shape.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional

from fibkit import catalog
from fibkit.catalog import DefSpec

HERE = Path(__file__).resolve().parent
# Definitions with a CUDA starting kernel in cuda/<definition>.cu (and their C++ signatures).
# Definition -> the bindings whose template has passed `fibkit check` on the H200 (a binding
# is offered only once it has: the DSA torch bindings build there, but their check has not run).
CUDA_KERNELS = {
    "gdn_decode_qk4_v8_d128_k_last": ("torch", "tvm-ffi"),
    "gdn_prefill_qk4_v8_d128_k_last": ("torch", "tvm-ffi"),
    "dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64": ("tvm-ffi",),
    "dsa_topk_indexer_fp8_h64_d128_topk2048_ps64": ("tvm-ffi",),
}


class TemplateError(ValueError):
    """A template that cannot be written, with the reason."""


def signature_doc(name: str) -> str:
    """The destination-passing signature, inputs and outputs with dtypes and shapes (constant
    axes with their values), and the axes, as docstring text."""
    d = catalog.definition_dict(name)
    axes = d["axes"]

    def shape(dims) -> str:
        if dims is None:
            return "scalar"
        return "[" + ", ".join(f"{a}={axes[a]['value']}" if axes[a]["type"] == "const" else a
                               for a in dims) + "]"

    def rows(table) -> List[str]:
        out = []
        for arg, spec in table.items():
            note = spec.get("description", "")
            opt = " (may be None)" if spec.get("optional") else ""
            out.append(f"    {arg:<22} {spec['dtype']:<14} {shape(spec.get('shape'))}{opt}")
            if note:
                out.append(f"        {note}")
        return out

    args = ", ".join([*d["inputs"], *d["outputs"]])
    var = [a for a, v in axes.items() if v["type"] == "var"]
    lines = ["Signature (destination passing: write the outputs in place, return nothing):",
             f"    kernel({args})", "", "Inputs:", *rows(d["inputs"]), "", "Outputs:", *rows(d["outputs"]),
             "", f"Axes that vary between workloads: {', '.join(var) or 'none'}."]
    return "\n".join(lines)


_TRITON = '''"""{name}: a starting solution written by `fibkit init`.

Correct as written, not fast: `kernel` computes the outputs with PyTorch, following the
definition's reference, then writes each output with one Triton copy kernel. Replace the PyTorch part with your own Triton kernels
and keep the signature; `fibkit check --solution <this folder>` tells you whether it is still
right (add --interpret on a CPU machine), `fibkit bench --solution <this folder>` how fast.

{doc}
"""
{imports}
import triton
import triton.language as tl

# ---------------------------------------------------------------------------------------------
# The definition's semantics in PyTorch (fibkit's vectorized reference): replace with kernels.
{reference}

# ---------------------------------------------------------------------------------------------
# Writing the outputs.

@triton.jit
def _copy_kernel(src_ptr, dst_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(dst_ptr + offsets, tl.load(src_ptr + offsets, mask=mask), mask=mask)


def _write(dst: torch.Tensor, src: torch.Tensor) -> None:
    src = src.to(dst.dtype)
    if src.is_floating_point():
        # The contest fails any inf in an output, even where the reference has one (an
        # attention row with no valid slot has lse = -inf): write the largest finite value.
        big = torch.finfo(src.dtype).max
        src = src.clamp(-big, big)
    src = src.contiguous()
    n = dst.numel()
    if n:
        _copy_kernel[(triton.cdiv(n, 1024),)](src, dst, n, BLOCK=1024)


def kernel({args}):
    results = _reference({inputs})
    if isinstance(results, torch.Tensor):
        results = (results,)
    for dst, src in zip(({outputs},), results):
        _write(dst, src)
'''


def _triton_source(name: str) -> str:
    d = catalog.definition_dict(name)
    ref = catalog.reference_source(catalog.SPECS[name])
    ref = re.sub(r'^""".*?"""\n', "", ref, count=1, flags=re.S)  # its module docstring
    imports = [line for line in ref.splitlines() if re.match(r"(import|from) \S+", line)]
    body = "\n".join(line for line in ref.splitlines() if line not in imports).strip("\n")
    body = re.sub(r"^def run\(", "def _reference(", body, flags=re.M)
    if "import torch" not in imports:
        imports.append("import torch")
    inputs, outputs = list(d["inputs"]), list(d["outputs"])
    return _TRITON.format(name=name, doc=signature_doc(name), imports="\n".join(imports), reference=body,
                          args=", ".join(inputs + outputs), inputs=", ".join(inputs),
                          outputs=", ".join(outputs))


def _config(name: str, solution_name: str, language: str, entry: str, binding: Optional[str]) -> str:
    lines = ["# A solution folder in the starter kit's format: `fibkit check --solution .`, `fibkit",
             "# bench --solution .`, `fibkit pack --solution . -o solution.json`.",
             "[solution]", f'name = "{solution_name}"', f'definition = "{name}"', 'author = "you"', "",
             "[build]", f'language = "{language}"', f'entry_point = "{entry}"',
             "destination_passing_style = true"]
    if binding:
        lines.append(f'binding = "{binding}"')
    return "\n".join(lines) + "\n"


def _cuda_source(name: str, binding: str) -> str:
    kernel = (HERE / "cuda" / f"{name}.cu").read_text()
    # Binding blocks sit between whole-line markers `// >>> NAME` and `// <<< NAME`.
    part = re.search(rf"^// >>> {re.escape(binding)}\n(.*?)^// <<< {re.escape(binding)}\n", kernel, re.S | re.M)
    common = re.sub(r"^// >>> .*?^// <<< [^\n]*\n", "", kernel, flags=re.S | re.M)
    common = "\n".join(line for line in common.splitlines() if not line.startswith("//!")).lstrip("\n")
    header = (f"// {name}: a starting solution written by `fibkit init` ({binding} binding).\n"
              "// Correct as written, not fast: replace the kernel, keep the entry point's signature.\n//\n"
              + "\n".join(f"// {line}".rstrip() for line in signature_doc(name).splitlines()) + "\n\n")
    return header + common.rstrip() + "\n\n" + part.group(1)


def write_template(spec: DefSpec, folder: Path, language: str = "triton", binding: str = "torch",
                   force: bool = False) -> Path:
    """Write the starting solution for `spec` into `folder` (new or empty, unless force)."""
    from fibkit.evaluate.solution import check_output_folder

    folder = check_output_folder(folder, force, TemplateError)
    files: Dict[str, str]
    stem = f"{spec.alias}-{language}" + (f"-{binding}" if language == "cuda" else "") + "-template"
    if language == "triton":
        files = {"kernel.py": _triton_source(spec.name),
                 "config.toml": _config(spec.name, stem, "triton", "kernel.py::kernel", None)}
    elif language == "cuda":
        if spec.name not in CUDA_KERNELS:
            raise TemplateError(f"no CUDA starting kernel for {spec.alias} yet (CUDA: "
                                f"{', '.join(catalog.SPECS[n].alias for n in CUDA_KERNELS)}); "
                                f"use --language triton")
        if binding not in CUDA_KERNELS[spec.name]:
            raise TemplateError(f"the {spec.alias} CUDA template is checked with the "
                                f"{' and '.join(CUDA_KERNELS[spec.name])} binding only so far; "
                                f"use --binding {CUDA_KERNELS[spec.name][0]}")
        files = {"kernel.cu": _cuda_source(spec.name, binding),
                 "config.toml": _config(spec.name, stem, "cuda", "kernel.cu::kernel", binding)}
    else:
        raise TemplateError(f"unknown language {language!r} (triton or cuda)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for rel, text in files.items():
            (folder / rel).write_text(text)
    except OSError as e:
        raise TemplateError(f"{folder}: cannot write: {e.strerror or e}") from e
    return folder
