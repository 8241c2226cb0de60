"""The `fibkit` command line: argument parsing only; each verb calls one function elsewhere.

Exit codes: 0 success; 1 a solution failed a check or the harness disagreed; 2 the request
could not be carried out (bad arguments, no GPU for a GPU verb, a broken solution folder).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import List, Optional

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2


class UsageError(Exception):
    pass


def _progress():
    from tqdm.auto import tqdm

    return tqdm


def _defs(names):
    from fibkit import catalog

    try:
        return catalog.resolve_many(names)
    except KeyError as e:
        raise UsageError(e.args[0]) from e


def _need_gpu(verb: str, gpus: int = 1) -> None:
    import torch

    if gpus < 1:
        raise UsageError(f"{verb}: --gpus must be at least 1, got {gpus}")
    if not torch.cuda.is_available():
        raise UsageError(f"{verb}: no CUDA GPU on this machine; it times kernels on a GPU "
                         f"(on a CPU machine, `fibkit check --interpret` runs the Triton solutions "
                         f"through the interpreter)")
    if gpus > torch.cuda.device_count():
        raise UsageError(f"{verb}: --gpus {gpus}, but this host has {torch.cuda.device_count()} GPU(s)")


def _options(args, **over):
    from fibkit.dataset import dataset_path
    from fibkit.evaluate.cache import DEFAULT_DIR
    from fibkit.evaluate.runner import RunOptions

    opts = RunOptions(seed=args.seed, quick=args.quick, variant=args.variant,
                      dataset=dataset_path(args.dataset), limit=args.limit,
                      cache_dir=None if args.no_cache else DEFAULT_DIR / "references",
                      verbose=True)
    for k, v in over.items():
        setattr(opts, k, v)
    return opts


def cmd_dataset(args) -> int:
    from fibkit.dataset.writer import write_dataset

    n = write_dataset(Path(args.out), args.seed, [s.name for s in _defs(args.definitions)],
                      limit=args.limit, progress=_progress())
    print(f"wrote {n} workloads to {args.out}")
    return EXIT_OK


def _run(specs, opts, gpus: int = 1) -> List[dict]:
    from fibkit import report
    from fibkit.evaluate.runner import evaluate_definition

    if gpus > 1:
        from fibkit.evaluate.spread import evaluate_spread

        spread = evaluate_spread(specs, opts, [f"cuda:{i}" for i in range(gpus)])
    results = []
    for k, spec in enumerate(specs):
        result = spread[k] if gpus > 1 else evaluate_definition(spec, opts, progress=_progress())
        print(f"\n== {spec.alias} ({spec.name}), solution {result['solution']}")
        print(report.table(result))
        print(report.summary_line(result))
        results.append(result)
    return results


def _compare_with_harness(specs, results, args, opts) -> int:
    """Run the same solutions through flashinfer_bench.Benchmark and compare statuses."""
    from fibkit.evaluate.harness import run_benchmark

    official = run_benchmark([s.name for s in specs], args.variant, args.seed, args.quick,
                             opts.dataset, args.limit)
    disagree = 0
    for res in results:
        theirs = official.get(res["definition"], {})
        for row in res["workloads"]:
            other = theirs.get(row["uuid"], "NOT RUN")
            if other != row["status"]:
                disagree += 1
                print(f"harness disagrees: {res['definition']} {row['uuid']}: fibkit {row['status']}, "
                      f"flashinfer-bench {other}")
        print(f"flashinfer-bench harness, {res['definition']}: "
              f"{sum(s == 'PASSED' for s in theirs.values())}/{len(theirs)} passed")
    print(f"harness agreement: {'all statuses agree' if not disagree else f'{disagree} disagreement(s)'}")
    return EXIT_FAILED if disagree else EXIT_OK


def cmd_check(args) -> int:
    specs = _defs(args.definitions)
    if args.interpret:
        # Triton's interpreter runs kernels on the CPU with numpy; set before any kernel compiles.
        from fibkit.evaluate import interpreter

        interpreter.enable()
        from fibkit.evaluate.solution import read_config

        chosen = []
        for spec in specs:
            for v in spec.variants():
                if read_config(spec.solution_dir(v))["build"]["language"] == "triton":
                    chosen.append((spec, v))
        if not chosen:
            print("fibkit check --interpret: no Triton solution among the chosen definitions")
            return EXIT_OK
        failed = 0
        for spec, v in chosen:
            opts = _options(args, device="cpu", timing=False, variant=v, trials=1,
                            smallest=args.smallest)
            failed += sum(r["status"] != "PASSED" for r in _run([spec], opts)[0]["workloads"])
        return EXIT_FAILED if failed else EXIT_OK
    _need_gpu("check", args.gpus)
    opts = _options(args, timing=False)
    results = _run(specs, opts, args.gpus)
    bad = sum(r["status"] != "PASSED" for res in results for r in res["workloads"])
    print(f"\n{'all passed' if not bad else f'{bad} workload(s) failed'}")
    code = EXIT_FAILED if bad else EXIT_OK
    if args.harness == "flashinfer-bench":
        code = code or _compare_with_harness(specs, results, args, opts)
    return code


def cmd_bench(args) -> int:
    from fibkit import report

    _need_gpu("bench", args.gpus)
    specs = _defs(args.definitions)
    opts = _options(args, warmup=args.warmup, iters=args.iters, peers=not args.no_peers)
    results = _run(specs, opts, args.gpus)
    out = Path(args.results)
    for res in results:
        report.write_result(res, out)
    # The report covers every definition benched on this GPU so far, not only this run's.
    md = report.write_markdown(report.load_results(out, results[0]["gpu"]), out)
    print(f"\nresults and report in {md.parent}")
    print("\n".join(report.summary_line(r) for r in results))
    bad = sum(r["status"] != "PASSED" for res in results for r in res["workloads"])
    code = EXIT_FAILED if bad else EXIT_OK
    if args.harness == "flashinfer-bench":
        code = code or _compare_with_harness(specs, results, args, opts)
    return code


def cmd_pack(args) -> int:
    from fibkit.evaluate import solution as solution_lib

    spec = _defs([args.definition])[0]
    folder = Path(args.folder) if args.folder else spec.solution_dir(args.variant)
    sol = solution_lib.pack(folder)
    out = Path(args.output)
    out.write_text(sol.model_dump_json(indent=2) + "\n")
    print(f"packed {folder} -> {out} ({len(sol.sources)} source file(s), {sol.spec.language.value})")
    return EXIT_OK


def cmd_unpack(args) -> int:
    from fibkit.evaluate import solution as solution_lib

    out = solution_lib.unpack(args.file, args.dir)
    print(f"unpacked {args.file} -> {out}")
    return EXIT_OK


def cmd_sanitize(args) -> int:
    from fibkit.evaluate.harness import sanitize

    _need_gpu("sanitize")
    text = sanitize(args.definition, args.variant, args.workload, args.seed, args.tool)
    print(text)
    # flashinfer-bench's report says "<tool> passed successfully" per tool, and quotes
    # compute-sanitizer's "ERROR SUMMARY: N errors" when a tool finds something.
    found = re.search(r"ERROR SUMMARY: [1-9]", text) or re.search(r"\bfailed\b", text, re.I)
    return EXIT_FAILED if found else EXIT_OK


def cmd_profile(args) -> int:
    from fibkit.evaluate.harness import profile

    _need_gpu("profile")
    print(profile(args.definition, args.variant, args.workload, args.seed, args.kernel))
    return EXIT_OK


def cmd_modal(args) -> int:
    from fibkit.modal_app import run_remote

    argv = [s.name for s in _defs(args.definitions)] + (["--quick"] if args.quick else [])
    return run_remote(argv, Path(args.results))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fibkit", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="verb", required=True)

    def common(sp, defs=True):
        if defs:
            sp.add_argument("definitions", nargs="*", help="definition names or aliases (default: all five)")
        sp.add_argument("--variant", help="solution variant folder (default: the definition's default)")
        sp.add_argument("--seed", type=int, default=0, help="seed of synthesized and random inputs")
        sp.add_argument("--dataset", help="a FlashInfer-Trace dataset folder (default: $FIB_DATASET_PATH, "
                                          "else synthesize the official workloads)")
        sp.add_argument("--quick", action="store_true", help="a representative subset of each definition's workloads")
        sp.add_argument("--limit", type=int, help="at most N workloads per definition")
        sp.add_argument("--no-cache", action="store_true", help="recompute reference outputs and latencies")
        sp.add_argument("--gpus", type=int, default=1,
                        help="spread workloads over this many GPUs of this host (one process each)")
        sp.add_argument("--harness", choices=["fibkit", "flashinfer-bench"], default="fibkit",
                        help="flashinfer-bench: also run flashinfer_bench.Benchmark on the same "
                             "solutions and workloads and compare statuses")

    sp = sub.add_parser("dataset", help="write the offline FlashInfer-Trace dataset")
    sp.add_argument("definitions", nargs="*")
    sp.add_argument("--out", required=True)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--limit", type=int, help="first N workloads per definition")
    sp.set_defaults(func=cmd_dataset)

    sp = sub.add_parser("check", help="correctness on every workload (GPU), or --interpret on CPU")
    common(sp)
    sp.add_argument("--interpret", action="store_true", help="run the Triton solutions through the Triton interpreter on the CPU")
    sp.add_argument("--smallest", type=int, default=2, help="with --interpret: the N smallest workloads")
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser("bench", help="check, time, compare with peers and the floor; write results")
    common(sp)
    sp.add_argument("--results", default="results", help="results folder (default: results/)")
    sp.add_argument("--warmup", type=int, default=10)
    sp.add_argument("--iters", type=int, default=50)
    sp.add_argument("--no-peers", action="store_true")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("pack", help="pack a solution folder into solution.json")
    sp.add_argument("definition")
    sp.add_argument("--variant")
    sp.add_argument("--folder", help="pack this folder instead of the definition's variant")
    sp.add_argument("-o", "--output", default="solution.json")
    sp.set_defaults(func=cmd_pack)

    sp = sub.add_parser("unpack", help="unpack solution.json into a folder")
    sp.add_argument("file")
    sp.add_argument("dir")
    sp.set_defaults(func=cmd_unpack)

    for verb, fn, helptext in (("sanitize", cmd_sanitize, "compute-sanitizer on one workload"),
                               ("profile", cmd_profile, "ncu on one workload")):
        sp = sub.add_parser(verb, help=helptext)
        sp.add_argument("definition")
        sp.add_argument("--variant")
        sp.add_argument("--workload", help="workload uuid (default: the smallest)")
        sp.add_argument("--seed", type=int, default=0)
        if verb == "sanitize":
            sp.add_argument("--tool", action="append", choices=["memcheck", "racecheck", "initcheck", "synccheck"])
        else:
            sp.add_argument("--kernel", help="kernel name filter")
        sp.set_defaults(func=fn)

    sp = sub.add_parser("modal", help="run `fibkit bench` on a Modal B200")
    sp.add_argument("definitions", nargs="*")
    sp.add_argument("--quick", action="store_true")
    sp.add_argument("--results", default="results")
    sp.set_defaults(func=cmd_modal)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from fibkit.evaluate.solution import SolutionError

    try:
        return args.func(args)
    except (UsageError, SolutionError, FileNotFoundError, KeyError) as e:
        print(f"fibkit: {e.args[0] if e.args else e}", file=sys.stderr)
        return EXIT_UNUSABLE


if __name__ == "__main__":
    sys.exit(main())
