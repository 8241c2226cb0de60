"""Adding a definition takes one catalog entry plus its files: a toy sixth definition (its
definition JSON, reference, synthesis function, workload list and a PyTorch solution, all in a
temporary folder) goes through `fibkit dataset`, `check` and `pack` on the CPU, with no other
file of fibkit touched."""
import json

import pytest
import torch

from fibkit import catalog
from fibkit.cli import main

NAME = "toy_scaled_rownorm_d16"
DEFINITION = {
    "name": NAME, "op_type": "toy", "description": "y = scale * x / |x| per row, times w.",
    "axes": {"rows": {"type": "var"}, "dim": {"type": "const", "value": 16}},
    "inputs": {"x": {"shape": ["rows", "dim"], "dtype": "float32"},
               "w": {"shape": ["dim"], "dtype": "float32"},
               "scale": {"shape": None, "dtype": "float32"}},
    "outputs": {"y": {"shape": ["rows", "dim"], "dtype": "float32"}},
}
REFERENCE = '''import torch


def run(x, w, scale):
    return scale * x / x.norm(dim=1, keepdim=True).clamp_min(1e-6) * w
'''
SOLUTION = '''import torch


def run(x, w, scale, y):
    y.copy_(torch.nn.functional.normalize(x, dim=1, eps=1e-6) * (w * scale))
'''
CONFIG = f'''[solution]
name = "{NAME}_torch"
definition = "{NAME}"
author = "test"

[build]
language = "python"
entry_point = "main.py::run"
destination_passing_style = true
'''


def synthesize(axes, gen, device):
    """x: rows of very different norms (what makes the normalization matter)."""
    rows = axes["rows"]
    x = torch.randn(rows, 16, generator=gen, device=device)
    return {"x": x * torch.logspace(-2, 2, rows, device=device)[:, None]}


@pytest.fixture
def toy(tmp_path):
    root = tmp_path / "toy"
    spec = catalog.DefSpec(
        name=NAME, alias="toy", track="toys", op_type="toy", size_axis="rows",
        judge=catalog.Judge(atol=1e-5, rtol=1e-5),
        cost=lambda axes, inputs: catalog.Cost(axes["rows"] * 16 * 8, axes["rows"] * 16 * 4, 1e12),
        synthesize=synthesize, root=root, workloads_file=root / "workloads.json")
    spec.definition_path.parent.mkdir(parents=True)
    spec.definition_path.write_text(json.dumps(DEFINITION))
    spec.reference_path.parent.mkdir(parents=True)
    spec.reference_path.write_text(REFERENCE)
    solution = spec.solution_dir()
    solution.mkdir(parents=True)
    (solution / "main.py").write_text(SOLUTION)
    (solution / "config.toml").write_text(CONFIG)
    spec.workloads_file.write_text(json.dumps({NAME: {
        "var_axes": ["rows"], "blob_inputs": ["x"], "scalar_inputs": ["scale"],
        "workloads": [["toy-1", 3, 0.5], ["toy-2", 40, 2.0]]}}))
    catalog.register(spec)
    yield spec
    catalog.unregister(NAME)


def test_a_sixth_definition_through_the_catalog_alone(toy, tmp_path, capsys):
    from fibkit.dataset import official_workloads

    assert [w.axes["rows"] for w in official_workloads(NAME)] == [3, 40]
    data = tmp_path / "data"
    assert main(["dataset", "--out", str(data), "toy"]) == 0
    assert (data / "definitions" / "toy" / f"{NAME}.json").is_file()
    assert len((data / "workloads" / "toy" / f"{NAME}.jsonl").read_text().splitlines()) == 2
    assert len(list((data / "blob").rglob("*.safetensors"))) == 2
    for source in ([], ["--dataset", str(data)]):  # synthesized, then the written dataset
        assert main(["check", "toy", "--interpret", "--variant", "baseline", "--no-cache", *source]) == 0
        assert "2/2 workload(s) passed" in capsys.readouterr().out
    # The check can fail: the same solution without the scale is wrong on every workload.
    main_py = toy.solution_dir() / "main.py"
    main_py.write_text(SOLUTION.replace("(w * scale)", "w"))
    assert main(["check", "toy", "--interpret", "--variant", "baseline", "--no-cache"]) == 1
    assert "0/2 workload(s) passed" in capsys.readouterr().out
    main_py.write_text(SOLUTION)
    out = tmp_path / "solution.json"
    assert main(["pack", "toy", "--out", str(out)]) == 0
    packed = json.loads(out.read_text())
    assert packed["definition"] == NAME and packed["spec"]["language"] == "python"


def test_the_cpu_runs_a_cuda_defaults_twin():
    decode = catalog.SPECS["gdn_decode_qk4_v8_d128_k_last"]
    assert decode.variant_for(None, "cuda") == decode.default_variant == "cuda"
    assert decode.variant_for(None, "cpu") == decode.twin == "triton"
    assert decode.variant_for("baseline", "cpu") == "baseline"  # asked for, always
    for spec in catalog.SPECS.values():  # every twin is a solution folder of its own
        assert spec.variant_for(None, "cpu") in spec.variants()
