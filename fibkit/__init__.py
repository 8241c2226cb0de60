"""fibkit: kernels and a contest-faithful workflow for the FlashInfer-Bench MLSys 2026 definitions."""

__version__ = "0.1.0"

