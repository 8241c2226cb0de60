"""What the GPU gives for the DSA attention's memory pattern: T x 2048 random 1 KB rows of the
ckv cache (8462 pages x 64 slots x 512 bf16), gathered by torch.index_select, against a
contiguous copy of as many bytes; CUPTI span, cold L2, median of 20. The attention kernel's
gather cannot beat the first column by much; the issue's bound assumes the second.

    python benchmarks/gather_ceiling.py
"""
import torch

from fibkit.evaluate.timing import time_us

PAGES, SLOTS, DC = 8462, 64, 512


def main():
    g = torch.Generator(device="cuda").manual_seed(0)
    ckv = torch.randn(PAGES * SLOTS, DC, device="cuda", generator=g).bfloat16()
    print("| T | rows | MB read | index_select us (GB/s read) | contiguous copy us (GB/s read) |\n| --- | --- | --- | --- | --- |")
    for tokens in (1, 2, 8):
        n = tokens * 2048
        idx = torch.randperm(PAGES * SLOTS, device="cuda", generator=g)[:n]
        out = torch.empty(n, DC, dtype=torch.bfloat16, device="cuda")
        src = ckv[:n]
        gather = time_us(lambda i, o: torch.index_select(ckv, 0, i, out=o), [idx, out], 3, 20)
        copy = time_us(lambda s, o: o.copy_(s), [src, out], 3, 20)
        mb = n * DC * 2 / 1e6
        print(f"| {tokens} | {n} | {mb:.1f} | {gather:.1f} ({mb * 1e3 / gather:.0f}) | "
              f"{copy:.1f} ({mb * 1e3 / copy:.0f}) |", flush=True)


if __name__ == "__main__":
    main()
