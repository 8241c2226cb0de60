"""Reference semantics of the five definitions, one self-contained module per definition.

Each module defines ``run(*inputs)`` returning the outputs, in the definitions' order. The
module's source text becomes the ``reference`` field of the definition JSON that the dataset
writer emits, so it must import nothing from fibkit. They follow the official references
exactly (float32 math, same masking and padding rules) but are vectorized so the evaluator can
afford them on every workload.
"""
