"""The contestant's flow on their own solution, end to end: init -> check -> pack -> check the
solution.json, for every definition (Triton through the interpreter here); the starter kit's
config.toml and scripts; FlashInfer-Trace output; and, on the GPU, the CUDA templates with both
bindings and `bench --solution` beside fibkit's solution and the peers."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fibkit import catalog
from fibkit.cli import main
from fibkit.evaluate import solution as solution_lib
from fibkit.templates import CUDA_KERNELS

ROOT = Path(__file__).resolve().parents[1]


def decode_template(tmp_path):
    """`fibkit init gdn_decode` into tmp_path/mine (the Triton template), returned."""
    folder = tmp_path / "mine"
    assert main(["init", "gdn_decode", str(folder)]) == 0
    return folder


@pytest.mark.parametrize("name", list(catalog.SPECS))
def test_init_check_pack_check(tmp_path, capsys, name):
    spec = catalog.SPECS[name]
    folder = tmp_path / "mine"
    assert main(["init", spec.alias, str(folder)]) == 0
    kernel = (folder / "kernel.py").read_text()
    d = catalog.definition_dict(name)
    assert f"kernel({', '.join([*d['inputs'], *d['outputs']])})" in kernel  # the exact signature
    assert "@triton.jit" in kernel
    check = ["check", "--interpret", "--smallest", "1", "--no-cache"]
    assert main([*check, "--solution", str(folder), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "1/1 workload(s) passed" in out

    packed = tmp_path / "solution.json"
    assert main(["pack", "--solution", str(folder), "-o", str(packed)]) == 0
    sol = json.loads(packed.read_text())
    assert sol["definition"] == name and [s["path"] for s in sol["sources"]] == ["kernel.py"]
    assert main([*check, "--solution", str(packed)]) == 0

    from flashinfer_bench import TraceSet

    traces = TraceSet.from_path(str(tmp_path / "out"))
    [trace] = traces.traces[name]
    assert trace.solution == sol["name"] and trace.evaluation.status.value == "PASSED"
    assert name in traces.definitions and traces.solutions[name][0].name == sol["name"]


def test_a_wrong_solution_fails_check(tmp_path, capsys):
    folder = decode_template(tmp_path)
    kernel = folder / "kernel.py"
    kernel.write_text(kernel.read_text().replace("_write(dst, src)", "_write(dst, src * 1.1)"))
    assert main(["check", "--interpret", "--smallest", "1", "--no-cache", "--solution", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "INCORRECT_NUMERICAL" in out and "max abs error" in out and "failed: " in out


def starter_project(tmp_path: Path, definition="gdn_decode") -> Path:
    """A starter-kit fork: config.toml at the root, the kernel in solution/triton/."""
    project = tmp_path / "starter"
    main(["init", definition, str(project / "solution" / "triton")])
    (project / "solution" / "triton" / "config.toml").unlink()
    (project / "config.toml").write_text(
        '[solution]\nname = "my-team-solution-v1"\n'
        f'definition = "{catalog.resolve(definition).name}"\nauthor = "team-name"\n\n'
        '[build]\nlanguage = "triton"\nentry_point = "kernel.py::kernel"\n'
        'destination_passing_style = true\n')
    return project


def script(name: str, *args: str):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args],
                          capture_output=True, text=True, timeout=600)


def test_starter_kit_scripts_act_on_the_config(tmp_path):
    project = starter_project(tmp_path)
    config = project / "config.toml"
    r = script("pack_solution.py", "--config", str(config))
    assert r.returncode == 0, r.stderr
    sol = json.loads((project / "solution.json").read_text())
    assert sol["name"] == "my-team-solution-v1" and sol["definition"] == "gdn_decode_qk4_v8_d128_k_last"
    assert sol["sources"][0]["content"] == (project / "solution/triton/kernel.py").read_text()

    r = script("run_local.py", "--config", str(config), "--interpret", "--smallest", "1", "--no-cache")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "my-team-solution-v1" in r.stdout

    if not torch.cuda.is_available():
        r = script("run_local.py", "--config", str(config))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_repository_config_packs_fibkits_decode(tmp_path):
    r = script("pack_solution.py", "-o", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    sol = json.loads((tmp_path / "s.json").read_text())
    folder = catalog.SPECS["gdn_decode_qk4_v8_d128_k_last"].solution_dir("triton")
    assert [s["content"] for s in sol["sources"]] == [(folder / "main.py").read_text()]


def test_config_mismatch_with_its_sources_folder(tmp_path, capsys):
    decode_template(tmp_path)  # the sources folder "mine" the config names
    config = tmp_path / "config.toml"
    config.write_text('[solution]\nname = "x"\ndefinition = "gdn_prefill"\nauthor = "a"\n'
                      '[build]\nlanguage = "triton"\nentry_point = "kernel.py::kernel"\nsources = "mine"\n')
    assert main(["pack", "--solution", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sources folder" in err[0] and "gdn_decode_qk4_v8_d128_k_last" in err[0]


def test_pack_refuses_a_folder_of_another_definition(tmp_path, capsys):
    folder = decode_template(tmp_path)
    assert main(["pack", "gdn_prefill", "--folder", str(folder), "-o", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not gdn_prefill_qk4_v8_d128_k_last" in err[0]
    assert main(["pack", "gdn_decode", "--folder", str(folder), "-o", str(tmp_path / "s.json")]) == 0


def test_named_definition_must_match_the_solution(tmp_path, capsys):
    folder = decode_template(tmp_path)
    assert main(["check", "gdn_prefill", "--solution", str(folder), "--interpret"]) == 2
    assert "is for gdn_decode" in capsys.readouterr().err


def test_cuda_init_without_a_cuda_kernel_is_refused(tmp_path, capsys):
    missing = next(s for s in catalog.SPECS.values() if s.name not in CUDA_KERNELS)
    assert main(["init", missing.alias, str(tmp_path / "c"), "--language", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA starting kernel" in err[0]


CUDA_CASES = [(name, binding) for name, bindings in CUDA_KERNELS.items() for binding in bindings]


@pytest.mark.parametrize("name,binding", CUDA_CASES)
def test_cuda_template_is_written_and_packs(tmp_path, binding, name):
    folder = tmp_path / binding
    assert main(["init", name, str(folder), "--language", "cuda", "--binding", binding]) == 0
    source = (folder / "kernel.cu").read_text()
    d = catalog.definition_dict(name)
    assert "__global__ void" in source and "//!" not in source and "// >>>" not in source
    assert f"kernel({', '.join([*d['inputs'], *d['outputs']])})" in source  # the documented signature
    assert ("PYBIND11_MODULE" in source) == (binding == "torch")
    assert ("TVM_FFI_DLL_EXPORT_TYPED_FUNC" in source) == (binding == "tvm-ffi")
    sol = solution_lib.pack(folder)
    assert sol.spec.language.value == "cuda" and sol.spec.binding.value == binding


def test_unchecked_cuda_binding_is_refused(tmp_path, capsys):
    assert main(["init", "dsa_attention", str(tmp_path / "c"), "--language", "cuda", "--binding", "torch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--binding tvm-ffi" in err[0]


@pytest.mark.gpu
@pytest.mark.parametrize("name,binding", [c for c in CUDA_CASES if c[0] != "gdn_decode_qk4_v8_d128_k_last"])
def test_cuda_template_checks_on_the_gpu(tmp_path, binding, name):
    folder = tmp_path / binding
    assert main(["init", name, str(folder), "--language", "cuda", "--binding", binding]) == 0
    assert main(["check", "--solution", str(folder), "--quick", "--no-cache"]) == 0


@pytest.mark.gpu
def test_cuda_prefill_template_gives_empty_sequences_a_zero_state_on_the_gpu(tmp_path):
    """As the contest's reference does (official workloads have no empty sequence, so the
    quick check above cannot see it)."""
    from fibkit.testing import synthesized

    name = "gdn_prefill_qk4_v8_d128_k_last"
    folder = tmp_path / "t"
    assert main(["init", name, str(folder), "--language", "cuda", "--binding", "tvm-ffi"]) == 0
    fn = solution_lib.load(solution_lib.pack(folder), catalog.load_definition(name))
    x = synthesized(name, {"total_seq_len": 9, "num_seqs": 3}, 5, "cpu")
    x["cu_seqlens"] = torch.tensor([0, 5, 5, 9])
    inputs = [x[n].cuda() for n in ["q", "k", "v", "state", "A_log", "a", "dt_bias", "b", "cu_seqlens"]] + [0.0]
    out = torch.full((9, 8, 128), float("nan"), dtype=torch.bfloat16, device="cuda")
    new_state = torch.full((3, 8, 128, 128), float("nan"), device="cuda")
    fn(*inputs, out, new_state)
    assert torch.equal(new_state[1], torch.zeros_like(new_state[1]))
    assert torch.isfinite(out.float()).all() and torch.isfinite(new_state).all()


@pytest.mark.gpu
@pytest.mark.parametrize("binding", ["torch", "tvm-ffi"])
def test_cuda_template_checks_and_benches_on_the_gpu(tmp_path, binding):
    folder = tmp_path / binding
    assert main(["init", "gdn_decode", str(folder), "--language", "cuda", "--binding", binding]) == 0
    assert main(["check", "--solution", str(folder), "--quick", "--no-cache"]) == 0
    out = tmp_path / "results"
    assert main(["bench", "--solution", str(folder), "--quick", "--limit", "2", "--no-cache", "--results", str(out)]) == 0
    [result] = out.glob("*/*/gdn_decode_qk4_v8_d128_k_last.json")
    rows = json.loads(result.read_text())["workloads"]
    assert all(r["status"] == "PASSED" and r["latency_us"] > 0 for r in rows)
    assert all({"fibkit", "torch"} <= set(r["peers"]) for r in rows)


@pytest.mark.gpu
def test_bench_times_only_the_chosen_peers_and_can_leave_the_reference_untimed(tmp_path):
    folder = decode_template(tmp_path)
    out = tmp_path / "results"
    assert main(["bench", "--solution", str(folder), "--quick", "--limit", "1", "--results", str(out),
                 "--peers", "fibkit", "--no-reference-timing"]) == 0
    [result] = out.glob("*/*/gdn_decode_qk4_v8_d128_k_last.json")
    [row] = json.loads(result.read_text())["workloads"]
    assert row["latency_us"] > 0 and list(row["peers"]) == ["fibkit"]
    assert "reference_latency_us" not in row and "speedup_vs_reference" not in row


@pytest.mark.gpu
def test_bench_solution_puts_yours_fibkit_and_peers_in_one_report(tmp_path):
    folder = decode_template(tmp_path)
    out = tmp_path / "results"
    assert main(["bench", "--solution", str(folder), "--quick", "--limit", "2", "--results", str(out)]) == 0
    [report] = out.glob("*/*/REPORT.md")
    text = report.read_text()
    for column in ("yours_us", "fibkit_us", "torch_us", "fla_us"):
        assert column in text
    assert "vs fibkit" in text and (report.parent / "traces").is_dir()
