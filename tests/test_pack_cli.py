"""Packing round-trips, and the CLI's verbs, help and error paths (each a single line on
stderr and exit code 2)."""
import argparse
import json

import pytest
import torch

from fibkit import catalog
from fibkit.cli import main
from fibkit.evaluate import solution


@pytest.mark.parametrize("name", list(catalog.SPECS))
def test_pack_unpack_round_trip(tmp_path, name):
    from flashinfer_bench.data import Solution

    spec = catalog.SPECS[name]
    for variant in spec.variants():
        out = tmp_path / f"{variant}.json"
        assert main(["pack", spec.alias, "--variant", variant, "-o", str(out)]) == 0
        sol = Solution.model_validate_json(out.read_text())
        assert sol.definition == name
        assert main(["unpack", str(out), str(tmp_path / variant)]) == 0
        again = solution.pack(tmp_path / variant)
        assert again == sol  # same name, spec and sources: content hash equal


def test_packing_takes_top_level_sources_only(tmp_path):
    src = catalog.SPECS["gdn_decode_qk4_v8_d128_k_last"].solution_dir("baseline")
    folder = tmp_path / "sol"
    folder.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (folder / f.name).write_text(f.read_text())
    (folder / "sub").mkdir()
    (folder / "sub" / "helper.py").write_text("x = 1\n")
    (folder / "notes.txt").write_text("not a source\n")
    assert [s.path for s in solution.pack(folder).sources] == ["main.py"]


def one_error_line(capsys, argv) -> str:
    """Run the CLI; it must exit 2 with exactly one line on stderr, more than the bare code."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("fibkit: ") and len(err[0]) > len("fibkit: 2"), err
    return err[0]


GOOD_BUILD = '[build]\nlanguage = "triton"\nentry_point = "kernel.py::kernel"\n'


@pytest.mark.parametrize("config,expect", [
    ("[solution\nname = 'x'\n", "invalid TOML"),
    ("[solution]\nname = 'x'\n", "missing [solution] definition"),
    ('[solution]\nname = "x"\ndefinition = "gdn_decode"\nauthor = "a"\n', "missing [build] table"),
    ('[solution]\nname = "x"\ndefinition = "gdn_decode"\n' + GOOD_BUILD, "missing [solution] author"),
    ('[solution]\nname = "x"\ndefinition = "fused_moe"\nauthor = "a"\n' + GOOD_BUILD,
     "'fused_moe' is a track"),
    ('[solution]\nname = "x"\ndefinition = "gdn"\nauthor = "a"\n' + GOOD_BUILD, "unknown definition 'gdn'"),
    ('[solution]\nname = "x"\ndefinition = "gdn_decode"\nauthor = "a"\n'
     '[build]\nlanguage = "triton"\nentry_point = "kernel"\n', "must be 'file::function'"),
    ('[solution]\nname = "x"\ndefinition = "gdn_decode"\nauthor = "a"\n'
     '[build]\nlanguage = "fortran"\nentry_point = "kernel.py::kernel"\n', "language"),
    ('[solution]\nname = "x"\ndefinition = "gdn_decode"\nauthor = "a"\n'
     '[build]\nlanguage = "triton"\nentry_point = "kernel.py::kernel"\ndestination_passing_style = "yes"\n',
     "destination_passing_style must be a bool"),
    ('[solution]\nname = "x"\ndefinition = "gdn_decode"\nauthor = "a"\n'
     '[build]\nlanguage = "triton"\nentry_point = "other.py::kernel"\n', "other.py"),
])
def test_bad_config_is_one_line(tmp_path, capsys, config, expect):
    (tmp_path / "config.toml").write_text(config)
    (tmp_path / "kernel.py").write_text("def kernel():\n    pass\n")
    for argv in (["pack", "--solution", str(tmp_path)], ["check", "--solution", str(tmp_path), "--interpret"]):
        assert expect in one_error_line(capsys, argv)


def test_cli_errors(tmp_path, capsys):
    assert "unknown definition" in one_error_line(capsys, ["pack", "no_such_definition"])
    assert "no config.toml" in one_error_line(capsys, ["pack", "gdn_decode", "--folder", str(tmp_path)])
    assert "no such file" in one_error_line(capsys, ["check", "--solution", str(tmp_path / "nope.json")])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not a valid solution.json" in one_error_line(capsys, ["unpack", str(bad), str(tmp_path / "x")])
    assert "not a valid solution.json" in one_error_line(capsys, ["check", "--solution", str(bad)])
    assert "--smallest must be at least 1" in one_error_line(
        capsys, ["check", "gdn_decode", "--interpret", "--smallest", "0"])
    assert "no variant" in one_error_line(capsys, ["check", "gdn_decode", "--interpret", "--variant", "nope"])
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert "not writable" in one_error_line(capsys, ["dataset", "gdn_decode", "--out", str(a_file / "d")])
    assert "not writable" in one_error_line(
        capsys, ["check", "gdn_decode", "--interpret", "--out", str(a_file / "d")])
    assert "nope is not a peer of gdn_prefill; choose from fla, flashinfer, flashinfer-kernel, torch" in \
        one_error_line(capsys, ["bench", "gdn_prefill", "--peers", "fla,nope"])
    assert "exclude each other" in one_error_line(capsys, ["bench", "gdn_decode", "--peers", "fla", "--no-peers"])
    with pytest.raises(SystemExit):
        main(["bench", "--no-such-flag"])


def test_unpack_refuses_to_overwrite(tmp_path, capsys):
    packed = tmp_path / "s.json"
    assert main(["pack", "gdn_decode", "--variant", "baseline", "-o", str(packed)]) == 0
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    assert "not a folder" in one_error_line(capsys, ["unpack", str(packed), str(a_file)])
    assert a_file.read_text() == "keep me"
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert "not empty" in one_error_line(capsys, ["unpack", str(packed), str(full)])
    assert main(["unpack", str(packed), str(full), "--force"]) == 0
    assert (full / "main.py").is_file() and (full / "notes.txt").read_text() == "mine"


def _dataset(tmp_path):
    root = tmp_path / "data"
    assert main(["dataset", "gdn_decode", "--out", str(root), "--limit", "1"]) == 0
    jsonl = root / "workloads/gdn/gdn_decode_qk4_v8_d128_k_last.jsonl"
    blob = root / json.loads(jsonl.read_text().splitlines()[0])["workload"]["inputs"]["state"]["path"]
    return root, jsonl, blob


def test_dataset_errors_are_one_line(tmp_path, capsys):
    root, jsonl, blob = _dataset(tmp_path)
    check = ["check", "gdn_decode", "--interpret", "--variant", "baseline", "--smallest", "1",
             "--no-cache", "--dataset", str(root)]
    assert main(check) == 0
    capsys.readouterr()

    from safetensors.torch import load_file, save_file

    tensors = load_file(str(blob))
    save_file({**tensors, "state": tensors["state"][:, :4].contiguous()}, str(blob))
    assert "the definition wants" in one_error_line(capsys, check)
    save_file({**tensors, "state": tensors["state"].double()}, str(blob))
    assert "the definition wants" in one_error_line(capsys, check)
    blob.write_bytes(b"not a safetensors file")
    assert "unreadable safetensors blob" in one_error_line(capsys, check)
    jsonl.write_text(jsonl.read_text() + "{broken\n")
    assert ":2: not a workload record" in one_error_line(capsys, check)


def test_modal_without_a_token(monkeypatch, capsys):
    pytest.importorskip("modal")
    from modal.config import config

    monkeypatch.setattr(config, "get", lambda key, *a, **k: None)
    assert "no Modal token" in one_error_line(capsys, ["modal", "gdn_decode", "--quick"])


def test_modal_returns_the_remote_exit_code(tmp_path, monkeypatch):
    pytest.importorskip("modal")
    import contextlib

    from fibkit import modal_app

    class FakeBench:
        def remote(self, argv, solution_json):
            assert argv == ["gdn_decode_qk4_v8_d128_k_last"] and solution_json is None
            return 1, {"NVIDIA_B200/REPORT.md": b"report"}

    class FakeApp:
        def run(self):
            return contextlib.nullcontext()

    monkeypatch.setattr(modal_app, "check_token", lambda: None)
    monkeypatch.setattr(modal_app, "build_app", lambda: (FakeApp(), FakeBench()))
    assert main(["modal", "gdn_decode", "--results", str(tmp_path)]) == 1
    assert (tmp_path / "NVIDIA_B200/REPORT.md").read_bytes() == b"report"


def test_help_and_version(capsys):
    from fibkit import __version__
    from fibkit.cli import build_parser

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"fibkit {__version__}"
    parser = build_parser()
    assert "exit codes" in parser.format_help() and "gdn_prefill" in parser.format_help()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for verb, sp in sub.choices.items():
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"fibkit {verb}: {action.dest} has no help text"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_gpu_verbs_refuse_without_gpu(capsys):
    for verb in (["bench", "gdn_decode"], ["check"], ["sanitize", "gdn_decode"]):
        assert main(verb) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no CUDA GPU" in err[0]


def test_check_interpret_reports_a_broken_variant_and_runs_the_others(tmp_path, monkeypatch, capsys):
    import dataclasses
    import shutil

    spec = catalog.SPECS["gdn_decode_qk4_v8_d128_k_last"]
    moved = dataclasses.replace(spec, root=tmp_path)  # the same definition, its files copied
    for src, dst in [(spec.definition_path, moved.definition_path), (spec.reference_path, moved.reference_path)]:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    shutil.copytree(spec.solution_dir().parent, moved.solution_dir().parent)
    broken = moved.solution_dir("broken")
    shutil.copytree(moved.solution_dir("triton"), broken)
    (broken / "main.py").write_text("def run(:\n")  # does not even parse
    monkeypatch.setitem(catalog.SPECS, spec.name, moved)
    catalog.definition_dict.cache_clear()
    assert main(["check", "gdn_decode", "--interpret", "--smallest", "1", "--no-cache"]) == 1
    out = capsys.readouterr().out
    assert "gdn_decode/broken: does not build" in out
    assert "2 solution(s), 1/2 workload(s) passed; failed: gdn_decode/broken 0/1" in out
    # --variant picks one, Python baselines included
    assert main(["check", "gdn_decode", "--interpret", "--smallest", "1", "--no-cache",
                 "--variant", "baseline"]) == 0
    assert "1 solution(s), 1/1 workload(s) passed" in capsys.readouterr().out


def test_dataset_verb(tmp_path):
    assert main(["dataset", "gdn_decode", "dsa_indexer", "--out", str(tmp_path), "--limit", "1"]) == 0
    lines = (tmp_path / "workloads/gdn/gdn_decode_qk4_v8_d128_k_last.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    assert rec["workload"]["inputs"]["scale"] == {"type": "scalar", "value": 0.08838834764831843}
    assert (tmp_path / rec["workload"]["inputs"]["q"]["path"]).is_file()


def test_modal_app_builds_offline():
    modal = pytest.importorskip("modal")
    from fibkit.modal_app import GPU, build_app

    app, bench = build_app()
    assert app.name == "fibkit-bench" and GPU == "B200"
    assert isinstance(bench, modal.Function)
