"""The checked-in type stub python/cnnviz/_C.pyi matches the native module."""
import ast
import importlib.util
import os

import cnnviz
from cnnviz import _C

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _generator():
    spec = importlib.util.spec_from_file_location("gen_stub", os.path.join(ROOT, "scripts", "gen_stub.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_stub_is_current_and_parses():
    with open(os.path.join(ROOT, "python", "cnnviz", "_C.pyi"), encoding="utf-8") as f:
        text = f.read()
    assert text == _generator().generate(), "stale: run python scripts/gen_stub.py"
    tree = ast.parse(text)
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    names |= {t.id for n in tree.body if isinstance(n, ast.AnnAssign) for t in [n.target]}
    public = {n for n in vars(_C) if not n.startswith("_")}
    assert public <= names, sorted(public - names)


def test_result_classes_have_typed_fields_in_the_stub():
    with open(os.path.join(ROOT, "python", "cnnviz", "_C.pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for name in ("Attribution", "CamResult", "InversionResult", "OcclusionResult", "LimeResult"):
        fields = {s.target.id for s in classes[name].body if isinstance(s, ast.AnnAssign)}
        assert {"stopped_early", "interrupted"} <= fields, name
    assert cnnviz.__file__
