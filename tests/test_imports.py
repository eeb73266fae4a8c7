"""Issue 17.4/17.5, by a pure-Python AST scan of src/sparsecod (lazy imports inside functions included):
dependencies run one way down the data flow, config → data → model → train → metrics → evaluation → collect →
plots (the CLI on top), and every third-party package the code imports is declared in pyproject.toml."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "sparsecod"

# bottom to top; a module may import its own layer and the layers below it
LAYERS = ("base", "config", "data", "model", "train", "metrics", "evaluation", "collect", "plots", "entry")
MODULE_LAYERS = {  # modules whose layer is not their package's
    "sparsecod.__version__": "base", "sparsecod.fileio": "base",
    "sparsecod.stats": "base",  # the statistics of the verdicts (intervals, tests): metrics and plots read it
    "sparsecod.external": "metrics",  # a transformers checkpoint -> our model + held-out shard, for the analysis
    "sparsecod": "entry",  # the package facade: sparsecod.load_model etc., imported lazily from model/
    "sparsecod.config": "config", "sparsecod.experiments": "config", "sparsecod.model.config": "config",
    "sparsecod.data.config": "config",
    "sparsecod.sweeps": "collect",  # reads finished runs' summaries, like collect
    "sparsecod.cli": "entry", "sparsecod.__main__": "entry",
}
# pairs the order allows but the design does not: analysing or evaluating a saved model needs no training code,
# and plots read the per-run files through the same lower modules collect uses, never collect's internals
FORBIDDEN = {("metrics", "train"), ("evaluation", "train"), ("plots", "collect")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in `path`, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # `from . import x`: the submodule x, or the name x of the package
                    out += [(f"{target}.{a.name}", node.lineno) for a in node.names]
                else:
                    out.append((target, node.lineno))
            else:
                out.append((node.module or "", node.lineno))
    return out


def layer(module: str) -> str:
    while module not in MODULE_LAYERS and module.count(".") > 1:
        module = module.rpartition(".")[0]
    if module in MODULE_LAYERS:
        return MODULE_LAYERS[module]
    top = module.split(".")[1]
    assert top in LAYERS, f"{module}: no layer (add it to MODULE_LAYERS)"
    return top


def edges() -> list[tuple[str, str, str]]:
    """(importer, imported, 'file:line') for every import of a sparsecod module by another."""
    return [(module_name(path), target, f"{path.relative_to(ROOT)}:{line}")
            for path in sorted(SRC.rglob("*.py")) for target, line in imports(path)
            if target == "sparsecod" or target.startswith("sparsecod.")]


def violations(found: list[tuple[str, str, str]]) -> list[str]:
    bad = []
    for importer, imported, where in found:
        a, b = layer(importer), layer(imported)
        if LAYERS.index(b) > LAYERS.index(a) or (a, b) in FORBIDDEN:
            bad.append(f"{where}: {importer} ({a}) imports {imported} ({b})")
    return bad


def test_dependencies_run_one_way() -> None:
    found = edges()
    assert len(found) > 50  # the scan sees the package's imports
    assert violations(found) == []


def test_the_scan_catches_upward_and_forbidden_imports() -> None:
    assert violations([("sparsecod.train.stats", "sparsecod.metrics.moments", "x:1"),
                       ("sparsecod.metrics.weight_sparsity", "sparsecod.train.optim", "x:2"),
                       ("sparsecod.plots.panels", "sparsecod.collect", "x:3"),
                       ("sparsecod.model.io", "sparsecod.config", "x:4"),
                       ("sparsecod.plots.panels", "sparsecod.metrics.variance_curve", "x:5")]) == [
        "x:1: sparsecod.train.stats (train) imports sparsecod.metrics.moments (metrics)",
        "x:2: sparsecod.metrics.weight_sparsity (metrics) imports sparsecod.train.optim (train)",
        "x:3: sparsecod.plots.panels (plots) imports sparsecod.collect (collect)"]
    assert ("sparsecod.model.moments", 16) in [(t, n) for t, n in imports(SRC / "train" / "stats.py")]


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-")


def test_every_imported_package_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    declared = {_normalise(req.split("==")[0]) for req in requirements}
    assert all("==" in req for req in requirements), "every requirement is an exact pin"
    providers = importlib.metadata.packages_distributions()
    third_party = {target.split(".")[0] for path in SRC.rglob("*.py") for target, _ in imports(path)}
    third_party -= {"sparsecod", "", *sys.stdlib_module_names}
    assert {"torch", "lightning", "pandas", "huggingface_hub", "yaml"} <= third_party
    for module in sorted(third_party):
        dists = {_normalise(d) for d in providers.get(module, [])}
        assert dists & declared, f"`import {module}` (from {sorted(dists)}) is not declared in pyproject.toml"
    # pandas' optional engines our code calls: DataFrame.to_markdown (tabulate), Styler.to_latex (jinja2)
    assert {"tabulate", "jinja2"} <= declared
