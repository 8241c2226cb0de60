"""Packing round-trips, and the CLI's verbs and error paths."""
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


def test_cli_errors(tmp_path, capsys):
    assert main(["pack", "no_such_definition"]) == 2
    assert "unknown definition" in capsys.readouterr().err
    assert main(["pack", "gdn_decode", "--folder", str(tmp_path)]) == 2
    assert "no config.toml" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["unpack", str(bad), str(tmp_path / "x")]) == 2
    (tmp_path / "config.toml").write_text("[solution]\nname = 'x'\n")
    assert main(["pack", "gdn_decode", "--folder", str(tmp_path)]) == 2
    assert "missing [solution] definition" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--no-such-flag"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_gpu_verbs_refuse_without_gpu(capsys):
    for verb in (["bench", "gdn_decode"], ["check"], ["sanitize", "gdn_decode"]):
        assert main(verb) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no CUDA GPU" in err[0]


def test_check_interpret_without_triton_solutions(capsys):
    if any(solution.read_config(s.solution_dir(v))["build"]["language"] == "triton"
           for s in catalog.SPECS.values() for v in s.variants()):
        pytest.skip("Triton solutions exist: covered by their own interpreter tests")
    assert main(["check", "--interpret"]) == 0
    assert "no Triton solution" in capsys.readouterr().out


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
