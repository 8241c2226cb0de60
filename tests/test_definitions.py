"""The project's definitions: same signature as the official ones, valid for flashinfer-bench."""
import pytest

from conftest import official_definition
from fibkit import catalog

NAMES = list(catalog.SPECS)


def signature(d):
    axes = {k: (v["type"], v.get("value")) for k, v in d["axes"].items()}
    tensors = lambda part: [(k, v["shape"], v["dtype"], bool(v.get("optional", False)))
                            for k, v in d[part].items()]
    return d["name"], d["op_type"], axes, tensors("inputs"), tensors("outputs"), d.get("constraints", [])


@pytest.mark.parametrize("name", NAMES)
def test_signature_matches_official(name):
    assert signature(catalog.definition_dict(name)) == signature(official_definition(name))


@pytest.mark.parametrize("name", NAMES)
def test_loads_as_flashinfer_bench_definition(name):
    d = catalog.load_definition(name)
    assert d.name == name and "def run(" in d.reference


def test_aliases_resolve_and_unknown_names_explain():
    for spec in catalog.SPECS.values():
        assert catalog.resolve(spec.alias) is spec
    with pytest.raises(KeyError, match="known:"):
        catalog.resolve("no_such_definition")
