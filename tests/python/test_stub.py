"""The checked-in type stub python/cnnviz/_C.pyi matches the native module: every class and
function it declares is declared as the module now has it (regenerate with
``python scripts/gen_stub.py``). Bindings newer than the stub are reported with a warning."""
import ast
import importlib.util
import os
import warnings

from cnnviz import _C

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _generator():
    spec = importlib.util.spec_from_file_location("gen_stub", os.path.join(ROOT, "scripts", "gen_stub.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _blocks(text):
    """Top-level name -> its declarations (overloads of a function together), as source."""
    tree = ast.parse(text)
    out = {}
    for node in tree.body:
        name = getattr(node, "name", None) or (node.target.id if isinstance(node, ast.AnnAssign) else None)
        if name:
            out[name] = out.get(name, "") + ast.unparse(node) + "\n"
    return out


def _checked_in():
    with open(os.path.join(ROOT, "python", "cnnviz", "_C.pyi"), encoding="utf-8") as f:
        return f.read()


def test_every_declaration_in_the_stub_is_current():
    stub, live = _blocks(_checked_in()), _blocks(_generator().generate())
    stale = sorted(n for n in stub if stub[n] != live.get(n))
    assert not stale, f"stale declarations {stale}: run python scripts/gen_stub.py"
    missing = sorted(set(live) - set(stub))
    if missing:
        warnings.warn(f"_C.pyi lacks {missing}: run python scripts/gen_stub.py", UserWarning)
    assert len(stub) > 50


def test_result_classes_have_typed_fields_in_the_stub():
    tree = ast.parse(_checked_in())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for name in ("Attribution", "CamResult", "InversionResult", "OcclusionResult", "LimeResult"):
        fields = {s.target.id: ast.unparse(s.annotation) for s in classes[name].body if isinstance(s, ast.AnnAssign)}
        assert fields["stopped_early"] == "bool" and fields["interrupted"] == "bool", name
    assert hasattr(_C, "InversionResult")
