"""The `fibkit` command line: argument parsing only; each verb calls one function elsewhere."""
from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path
from typing import List, Optional

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2

DESCRIPTION = """\
Check, time, pack and run kernels for the FlashInfer-Bench MLSys 2026 contest definitions, judged
as the contest's evaluator judges them: fibkit's own solutions, or yours (--solution PATH)."""

EPILOG = """\
definitions (full name or alias):
  moe            moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048
  dsa_attention  dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64
  dsa_indexer    dsa_topk_indexer_fp8_h64_d128_topk2048_ps64
  gdn_decode     gdn_decode_qk4_v8_d128_k_last
  gdn_prefill    gdn_prefill_qk4_v8_d128_k_last

a contestant's flow:
  fibkit init gdn_decode mysol            a correct (simple) starting solution
  fibkit check --solution mysol --interpret   on a CPU, through the Triton interpreter
  fibkit check --solution mysol           on a GPU, every workload
  fibkit bench --solution mysol           yours beside fibkit's and the peers, one report
  fibkit pack --solution mysol -o solution.json
  fibkit modal --solution solution.json   the same bench on a Modal B200

exit codes: 0 all passed; 1 a solution failed a workload (or the flashinfer-bench harness
disagreed); 2 the request could not be carried out (bad arguments or config, no GPU for a GPU
verb, an unreadable dataset, a solution that does not build)."""


class UsageError(Exception):
    pass


def _progress():
    """A progress bar factory: bars only on a terminal (disable=None), so that logs and an
    error's one line stay clean."""
    from functools import partial

    from tqdm.auto import tqdm

    return partial(tqdm, disable=None)


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


def _user_solution(args):
    """(the Solution, its definition's spec) for --solution, after checking that any named
    definitions agree with it; (None, None) without --solution."""
    if not getattr(args, "solution", None):
        return None, None
    from fibkit import catalog
    from fibkit.evaluate.solution import open_solution

    if getattr(args, "variant", None):
        raise UsageError("--solution and --variant exclude each other (--variant picks one of fibkit's)")
    sol = open_solution(args.solution)
    spec = catalog.SPECS[sol.definition]
    names = getattr(args, "definitions", None) or []
    named = _defs(names) if names else []
    if any(s.name != spec.name for s in named):
        raise UsageError(f"--solution {args.solution} is for {spec.name}, not "
                         + ", ".join(s.name for s in named if s.name != spec.name))
    return sol, spec


def _chosen_specs(args):
    """The definitions a check or bench runs: the --solution's, else the named ones (all)."""
    sol, spec = _user_solution(args)
    return [spec] if sol is not None else _defs(args.definitions)


def _options(args, **over):
    from fibkit.dataset import dataset_path
    from fibkit.evaluate.cache import DEFAULT_DIR
    from fibkit.evaluate.runner import RunOptions

    opts = RunOptions(seed=args.seed, quick=args.quick, variant=args.variant,
                      solution=Path(args.solution) if getattr(args, "solution", None) else None,
                      dataset=dataset_path(args.dataset), limit=args.limit,
                      cache_dir=None if args.no_cache else DEFAULT_DIR / "references",
                      verbose=True)
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    for k, v in over.items():
        setattr(opts, k, v)
    return opts


def _writable_dir(path: str, what: str) -> Path:
    d = Path(path)
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / ".fibkit-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"{what} {path}: not writable ({e.strerror or e})") from e
    return d


def cmd_dataset(args) -> int:
    from fibkit.dataset.writer import write_dataset

    specs = _defs(args.definitions)
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    out = _writable_dir(args.out, "--out")
    n = write_dataset(out, args.seed, [s.name for s in specs], limit=args.limit, progress=_progress())
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


def _failures(results) -> int:
    return sum(r["status"] != "PASSED" for res in results for r in res["workloads"])


def _compare_with_harness(specs, results, args, opts) -> int:
    """Run the same solutions through flashinfer_bench.Benchmark and compare statuses."""
    from fibkit.evaluate.harness import run_benchmark

    official = run_benchmark([s.name for s in specs], args.variant, args.seed, args.quick,
                             opts.dataset, args.limit, solution=opts.solution)
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


def _write_traces(results, out: Optional[Path]) -> None:
    if out is None:
        return
    from fibkit.evaluate.traces import write_traces

    write_traces(out, results)
    print(f"FlashInfer-Trace traces in {out / 'traces'}")


def _interpret_targets(args):
    """(spec, variant or None, label) for each solution `check --interpret` runs: the user's,
    the one --variant names, or every Triton or Python variant of the chosen definitions."""
    from fibkit.evaluate.solution import SolutionError, read_config

    sol, spec = _user_solution(args)
    if sol is not None:
        if sol.spec.language.value not in ("triton", "python"):
            raise UsageError(f"--interpret runs Triton and Python solutions on the CPU; "
                             f"{args.solution} is {sol.spec.language.value} (check it on a GPU)")
        return [(spec, None, sol.name)]
    targets = []
    for spec in _defs(args.definitions):
        variants = [args.variant] if args.variant else spec.variants()
        for v in variants:
            if not spec.solution_dir(v).is_dir():
                raise UsageError(f"{spec.alias}: no variant {v!r}; variants: {', '.join(spec.variants())}")
            try:
                language = read_config(spec.solution_dir(v))["build"]["language"]
            except SolutionError:
                language = "triton"  # a broken config is reported as that variant's failure
            if language in ("triton", "python") and (args.variant or language == "triton"):
                targets.append((spec, v, f"{spec.alias}/{v}"))
    return targets


def _check_interpreted(args) -> int:
    from fibkit.evaluate import interpreter

    if args.smallest < 1:
        raise UsageError(f"--smallest must be at least 1, got {args.smallest}")
    out = _writable_dir(args.out, "--out") if args.out else None
    with interpreter.interpreting():  # before any of the solutions' kernels is defined
        return _check_targets(args, _interpret_targets(args), out)


def _check_targets(args, targets, out) -> int:
    from fibkit.evaluate.solution import SolutionError

    if not targets:
        print("fibkit check --interpret: no Triton solution among the chosen definitions")
        return EXIT_OK
    summary, results = [], []
    for spec, variant, label in targets:
        opts = _options(args, device="cpu", timing=False, variant=variant, trials=1,
                        smallest=args.smallest)
        try:
            with warnings.catch_warnings():
                # numpy overflow warnings from the interpreter's exp of masked-out lanes
                warnings.simplefilter("ignore", RuntimeWarning)
                res = _run([spec], opts)[0]
        except SolutionError as e:
            print(f"\n== {label}: does not build: {e}")
            summary.append((label, 0, 1))
            continue
        results.append(res)
        summary.append((label, sum(r["status"] == "PASSED" for r in res["workloads"]), len(res["workloads"])))
    _write_traces(results, out)
    failed = [f"{label} {ok}/{n}" for label, ok, n in summary if ok < n]
    total = sum(n for _, _, n in summary)
    print(f"\ninterpreter check: {len(summary)} solution(s), {sum(ok for _, ok, _ in summary)}/{total} "
          f"workload(s) passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK


def cmd_check(args) -> int:
    if args.interpret:
        return _check_interpreted(args)
    specs = _chosen_specs(args)
    _need_gpu("check", args.gpus)
    opts = _options(args, timing=False)
    out = _writable_dir(args.out, "--out") if args.out else None
    results = _run(specs, opts, args.gpus)
    _write_traces(results, out)
    bad = _failures(results)
    print(f"\n{'all passed' if not bad else f'{bad} workload(s) failed'}")
    return _exit_code(specs, results, args, opts)


def cmd_bench(args) -> int:
    from fibkit import report

    specs = _chosen_specs(args)
    for name in ("warmup", "iters"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            raise UsageError(f"--{name} must be at least {0 if name == 'warmup' else 1}, got {value}")
    chosen_peers = _chosen_peers(args, specs)
    _need_gpu("bench", args.gpus)
    out_root = _writable_dir(args.results, "--results")
    opts = _options(args, warmup=args.warmup, iters=args.iters, peers=not args.no_peers,
                    peer_names=chosen_peers, reference_timing=not args.no_reference_timing)
    results = _run(specs, opts, args.gpus)
    folder = report.results_dir(out_root, results[0])
    for res in results:
        report.write_result(res, out_root)
    # The report covers every definition benched into this folder so far, not only this run's.
    md = report.write_markdown(report.load_results(folder), folder)
    _write_traces(results, folder)
    print(f"\nresults and report in {md.parent}")
    print("\n".join(report.summary_line(r) for r in results))
    return _exit_code(specs, results, args, opts)


def _chosen_peers(args, specs):
    """--peers as a tuple of names, each one of a chosen definition's peers; None: all."""
    if args.peers is None:
        return None
    from fibkit.evaluate.peers import peer_names

    if args.no_peers:
        raise UsageError("--peers and --no-peers exclude each other")
    names = tuple(n.strip() for n in args.peers.split(",") if n.strip())
    known = {n for spec in specs for n in peer_names(spec, args.solution is not None, args.variant)}
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise UsageError(f"--peers: {', '.join(unknown) or 'no name'} is not a peer of "
                         f"{', '.join(s.alias for s in specs)}; choose from {', '.join(sorted(known))}")
    return names


def _exit_code(specs, results, args, opts) -> int:
    """1 if a workload failed, or (with --harness flashinfer-bench) if flashinfer-bench's
    statuses disagree with ours; else 0."""
    if _failures(results):
        return EXIT_FAILED
    if args.harness == "flashinfer-bench":
        return _compare_with_harness(specs, results, args, opts)
    return EXIT_OK


def cmd_init(args) -> int:
    from fibkit.templates import write_template

    spec = _defs([args.definition])[0]
    folder = write_template(spec, Path(args.dir), args.language, args.binding, force=args.force)
    print(f"wrote a {args.language} starting solution for {spec.name} to {folder}; "
          f"next: fibkit check --solution {folder}" + (" --interpret" if args.language == "triton" else ""))
    return EXIT_OK


def cmd_pack(args) -> int:
    from fibkit.evaluate import solution as solution_lib

    if sum(bool(x) for x in (args.folder, args.solution)) > 1:
        raise UsageError("pack: give --folder or --solution, not both")
    if args.solution or args.folder:
        if args.variant:
            raise UsageError("pack: --variant picks one of fibkit's folders; it excludes --folder and --solution")
        source = Path(args.solution or args.folder)
        sol = solution_lib.pack(source)
        if args.definition and _defs([args.definition])[0].name != sol.definition:
            raise UsageError(f"pack: {source} is a solution for {sol.definition}, not "
                             f"{_defs([args.definition])[0].name}")
    else:
        if not args.definition:
            raise UsageError("pack: name a definition (fibkit's solution), or --solution PATH (yours)")
        spec = _defs([args.definition])[0]
        if args.variant and not spec.solution_dir(args.variant).is_dir():
            raise UsageError(f"pack: {spec.alias} has no variant {args.variant!r}; "
                             f"variants: {', '.join(spec.variants())}")
        source = spec.solution_dir(args.variant)
        sol = solution_lib.pack(source)
    out = Path(args.output)
    try:
        out.write_text(sol.model_dump_json(indent=2) + "\n")
    except OSError as e:
        raise UsageError(f"pack: cannot write {out}: {e.strerror or e}") from e
    print(f"packed {source} -> {out} ({sol.definition}, {len(sol.sources)} source file(s), "
          f"{sol.spec.language.value})")
    return EXIT_OK


def cmd_unpack(args) -> int:
    from fibkit.evaluate import solution as solution_lib

    out = solution_lib.unpack(args.file, args.dir, force=args.force)
    print(f"unpacked {args.file} -> {out}")
    return EXIT_OK


def _tool_target(args):
    """(definition name, Solution or None) for sanitize / profile."""
    sol, spec = _user_solution(args)
    if sol is not None:
        return spec.name, sol
    if not args.definitions:
        raise UsageError(f"{args.verb}: name a definition, or --solution PATH")
    if len(args.definitions) > 1:
        raise UsageError(f"{args.verb}: one definition at a time")
    return _defs(args.definitions)[0].name, None


def cmd_sanitize(args) -> int:
    from fibkit.evaluate.harness import sanitize

    name, sol = _tool_target(args)
    _need_gpu("sanitize")
    text = sanitize(name, args.variant, args.workload, args.seed, args.tool, solution=sol)
    print(text)
    # flashinfer-bench's report says "<tool> passed successfully" per tool, and quotes
    # compute-sanitizer's "ERROR SUMMARY: N errors" when a tool finds something.
    found = re.search(r"ERROR SUMMARY: [1-9]", text) or re.search(r"\bfailed\b", text, re.I)
    return EXIT_FAILED if found else EXIT_OK


def cmd_profile(args) -> int:
    from fibkit.evaluate.harness import profile

    name, sol = _tool_target(args)
    _need_gpu("profile")
    print(profile(name, args.variant, args.workload, args.seed, args.kernel, solution=sol))
    return EXIT_OK


def cmd_modal(args) -> int:
    from fibkit.modal_app import run_remote

    sol, _ = _user_solution(args)
    argv = ([] if sol is not None else [s.name for s in _defs(args.definitions)]) + \
        (["--quick"] if args.quick else [])
    return run_remote(argv, Path(args.results), solution=sol)


def build_parser() -> argparse.ArgumentParser:
    from fibkit import __version__

    p = argparse.ArgumentParser(prog="fibkit", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"fibkit {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def defs_arg(sp):
        sp.add_argument("definitions", nargs="*", metavar="DEF",
                        help="definition names or aliases (default: all five)")

    def solution_arg(sp):
        sp.add_argument("--solution", metavar="PATH",
                        help="your solution: a folder with config.toml, a starter-kit project, a "
                             "config.toml, or a solution.json (its definition is the one run)")

    def common(sp):
        defs_arg(sp)
        solution_arg(sp)
        sp.add_argument("--variant", help="one of fibkit's solution folders (default: the definition's default)")
        sp.add_argument("--seed", type=int, default=0, help="seed of synthesized and random inputs (default 0)")
        sp.add_argument("--dataset", metavar="DIR",
                        help="a FlashInfer-Trace dataset folder, e.g. the data/ that `fibkit dataset` "
                             "wrote (default: $FIB_DATASET_PATH, else synthesize the official workloads)")
        sp.add_argument("--quick", action="store_true", help="a representative subset of each definition's workloads")
        sp.add_argument("--limit", type=int, metavar="N", help="at most N workloads per definition")
        sp.add_argument("--no-cache", action="store_true", help="recompute reference outputs and latencies")
        sp.add_argument("--gpus", type=int, default=1, metavar="N",
                        help="spread workloads over N GPUs of this host, one process each (default 1)")
        sp.add_argument("--harness", choices=["fibkit", "flashinfer-bench"], default="fibkit",
                        help="flashinfer-bench: also run flashinfer_bench.Benchmark on the same "
                             "solutions and workloads and compare statuses")

    sp = sub.add_parser("init", help="write a correct (simple) starting solution folder for a definition",
                        description="Write config.toml and a kernel with the exact signature; it passes "
                                    "`fibkit check --solution DIR` as written.")
    sp.add_argument("definition", metavar="DEF", help="a definition name or alias")
    sp.add_argument("dir", metavar="DIR", help="the folder to create (must be new or empty)")
    sp.add_argument("--language", choices=["triton", "cuda"], default="triton", help="default triton")
    sp.add_argument("--binding", choices=["torch", "tvm-ffi"], default="torch",
                    help="with --language cuda: how the kernel is called from Python (default torch)")
    sp.add_argument("--force", action="store_true", help="write into a non-empty folder")
    sp.set_defaults(func=cmd_init)

    sp = sub.add_parser("dataset", help="write the offline FlashInfer-Trace dataset")
    defs_arg(sp)
    sp.add_argument("--out", required=True, metavar="DIR", help="the dataset folder to write")
    sp.add_argument("--seed", type=int, default=0, help="seed of the synthesized inputs (default 0)")
    sp.add_argument("--limit", type=int, metavar="N", help="first N workloads per definition")
    sp.set_defaults(func=cmd_dataset)

    sp = sub.add_parser("check", help="correctness on every workload (GPU), or --interpret on a CPU")
    common(sp)
    sp.add_argument("--interpret", action="store_true",
                    help="run Triton solutions through the Triton interpreter on the CPU")
    sp.add_argument("--smallest", type=int, default=2, metavar="N",
                    help="with --interpret: the N smallest workloads (default 2)")
    sp.add_argument("--out", metavar="DIR", help="also write FlashInfer-Trace traces under DIR/traces/")
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser("bench", help="check, then time beside the reference, the peers and the floor; write results")
    common(sp)
    sp.add_argument("--results", "--out", default="results", metavar="DIR",
                    help="results folder (default results/): JSON, REPORT.md, plots and traces "
                         "under DIR/<gpu>/ (DIR/<gpu>/<solution>/ for --solution)")
    sp.add_argument("--warmup", type=int, metavar="N",
                    help="warm-up runs per trial (default: the contest's, 10; 1 for gdn_prefill)")
    sp.add_argument("--iters", type=int, metavar="N",
                    help="timed iterations per trial (default: the contest's, 50; 5 for gdn_prefill)")
    sp.add_argument("--no-peers", action="store_true", help="time only the solution and the reference")
    sp.add_argument("--peers", metavar="NAME[,NAME]",
                    help="time only these peers (e.g. flashinfer-kernel,fla; default: all)")
    sp.add_argument("--no-reference-timing", action="store_true",
                    help="judge against the reference without timing it (no score vs the "
                         "reference; gdn_prefill's reference takes seconds a call at 8192 tokens)")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("pack", help="pack a solution into solution.json",
                        description="Pack fibkit's solution for DEF, or yours (--solution / --folder).")
    sp.add_argument("definition", nargs="?", metavar="DEF", help="a definition name or alias")
    sp.add_argument("--variant", help="one of fibkit's solution folders (default: the definition's default)")
    solution_arg(sp)
    sp.add_argument("--folder", metavar="DIR", help="a solution folder to pack (its definition must be DEF, if given)")
    sp.add_argument("-o", "--output", default="solution.json", metavar="FILE", help="default solution.json")
    sp.set_defaults(func=cmd_pack)

    sp = sub.add_parser("unpack", help="unpack solution.json into a solution folder")
    sp.add_argument("file", metavar="FILE", help="a solution.json")
    sp.add_argument("dir", metavar="DIR", help="the folder to write (new or empty)")
    sp.add_argument("--force", action="store_true", help="write into a non-empty folder")
    sp.set_defaults(func=cmd_unpack)

    for verb, fn, helptext in (("sanitize", cmd_sanitize, "compute-sanitizer on one workload (GPU)"),
                               ("profile", cmd_profile, "ncu on one workload (GPU)")):
        sp = sub.add_parser(verb, help=helptext)
        sp.add_argument("definitions", nargs="?", metavar="DEF", help="a definition name or alias")
        solution_arg(sp)
        sp.add_argument("--variant", help="one of fibkit's solution folders (default: the definition's default)")
        sp.add_argument("--workload", metavar="UUID", help="workload uuid (default: the smallest)")
        sp.add_argument("--seed", type=int, default=0, help="seed of the synthesized inputs (default 0)")
        if verb == "sanitize":
            sp.add_argument("--tool", action="append", choices=["memcheck", "racecheck", "initcheck", "synccheck"],
                            help="repeat for several (default: all four)")
        else:
            sp.add_argument("--kernel", help="profile only kernels whose name contains this")
        sp.set_defaults(func=fn)

    sp = sub.add_parser("modal", help="run `fibkit bench` on a Modal B200 (needs `modal setup`)")
    defs_arg(sp)
    solution_arg(sp)
    sp.add_argument("--quick", action="store_true", help="a representative subset of each definition's workloads")
    sp.add_argument("--results", default="results", metavar="DIR", help="where the results land (default results/)")
    sp.set_defaults(func=cmd_modal)
    return p


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    text = e.args[0] if len(e.args) == 1 and isinstance(e.args[0], str) else str(e)
    text = " ".join(text.split())
    return text or type(e).__name__


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if isinstance(getattr(args, "definitions", None), str):
        args.definitions = [args.definitions]
    from fibkit.evaluate.solution import SolutionError
    from fibkit.evaluate.workloads import DatasetError
    from fibkit.modal_app import ModalError
    from fibkit.templates import TemplateError

    try:
        return args.func(args)
    except (UsageError, SolutionError, DatasetError, ModalError, TemplateError, OSError, KeyError) as e:
        print(f"fibkit: {_message(e)}", file=sys.stderr)
        return EXIT_UNUSABLE


if __name__ == "__main__":
    sys.exit(main())
