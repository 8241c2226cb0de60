"""Multi-process use of the kernels: expert parallelism for the MoE (expert_parallel.py), and
its check and timing entry point for torchrun or CPU processes (ep_check.py)."""
