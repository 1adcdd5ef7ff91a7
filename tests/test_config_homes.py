"""Where configs live (issue 24, item 5): one rule a newcomer can guess, checked on the source.

A config class lives in the ``config.py`` (pipelines: ``configs.py``) of the package whose code reads it, and
is imported from there and nowhere else (the rule in :mod:`relsum.core.config`'s docstring). The source is
read with ``ast``, so a re-export that nothing imports yet, a ``module.XConfig`` attribute and a CLI table row
are all caught, not only the imports that happen to run.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from relsum.cli_stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
#: Source folders and the import name of their top (``pipelines/`` is installed as ``relsum.pipelines``).
LIBRARY = {"relsum": "relsum", "pipelines": "relsum.pipelines", "evaluation": "relsum.evaluation"}
#: Folders whose imports must use the homes too.
IMPORTERS = (*LIBRARY, "dags", "tests", "benchmarks")
HOME_FILES = ("config.py", "configs.py")
#: Not moved yet (another change is editing the module): name -> where it is until then.
PENDING: dict[str, str] = {}  # config classes not yet in their home (none left)
#: What a config module must not load: each costs 0.1-2 s to import (as in tests/test_cli_imports.py).
HEAVY = ("pandas", "numpy", "pyarrow", "duckdb", "torch", "transformers", "trl", "peft", "datasets",
         "sentence_transformers", "mlflow", "ray", "scipy", "sklearn", "matplotlib", "onnxruntime")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = [LIBRARY.get(rel.parts[0], rel.parts[0]), *rel.parts[1:]]
    parts[-1] = parts[-1].removesuffix(".py")
    return ".".join(p for p in parts if p != "__init__")


def sources(folders) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py") if "__pycache__" not in p.parts)


def is_dataclass_def(node: ast.AST) -> bool:
    return isinstance(node, ast.ClassDef) and any(
        "dataclass" in ast.unparse(d) for d in node.decorator_list)


def config_classes() -> dict[str, str]:
    """Every config dataclass of the library -> the module defining it: classes named ``*Config`` anywhere,
    plus every dataclass defined in a config module (its sections, e.g. ``EvalSection``)."""
    homes: dict[str, str] = {}
    for path in sources(LIBRARY):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if is_dataclass_def(node) and (node.name.endswith("Config") or path.name in HOME_FILES):
                assert node.name not in homes, f"{node.name} defined twice: {homes[node.name]}, {path}"
                homes[node.name] = module_name(path)
    return homes


def module_aliases(tree: ast.Module) -> dict[str, str]:
    """Local names bound to relsum modules: ``import relsum.x as a``, ``from relsum.x import y`` (y a
    module)."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname: a.name for a in node.names if a.asname and a.name.startswith("relsum")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("relsum"):
            aliases |= {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names if a.name.islower()}
    return aliases


def test_every_config_class_lives_in_its_package_config_module():
    homes = config_classes()
    # the walk really found the configs (a broken walk must not pass by finding nothing)
    assert len(homes) >= 30 and homes["ScorerConfig"] == "relsum.scoring.config"
    assert homes["DagConfig"] == homes["CompareConfig"] == "relsum.pipelines.configs"
    misplaced = {name: mod for name, mod in homes.items()
                 if mod.rsplit(".", 1)[-1] not in ("config", "configs") and PENDING.get(name) != mod}
    assert not misplaced, f"config classes outside a config.py/configs.py: {misplaced}"
    stale = {name: mod for name, mod in PENDING.items() if homes.get(name) != mod}
    assert not stale, f"moved: drop them from PENDING: {stale}"


def test_each_config_class_has_one_import_path():
    homes = config_classes()
    wrong = []
    for path in sources(IMPORTERS):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(ROOT)
        aliases = module_aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                wrong += [f"{where}:{node.lineno} from {node.module} import {a.name} (home: {homes[a.name]})"
                          for a in node.names if a.name in homes and node.module != homes[a.name]]
            elif (isinstance(node, ast.Attribute) and node.attr in homes and isinstance(node.value, ast.Name)
                  and node.value.id in aliases and aliases[node.value.id] != homes[node.attr]):
                wrong.append(f"{where}:{node.lineno} {aliases[node.value.id]}.{node.attr} "
                             f"(home: {homes[node.attr]})")
            elif (isinstance(node, ast.Assign) and module_name(path) not in homes.values()
                  and any(getattr(t, "id", "") == "__all__" for t in node.targets)):
                wrong += [f"{where}:{node.lineno} __all__ re-exports {e.value}" for e in node.value.elts
                          if isinstance(e, ast.Constant) and e.value in homes]
    assert not wrong, "import configs from their home module:\n" + "\n".join(wrong)


def test_the_cli_table_names_each_config_by_its_home():
    homes = config_classes()
    rows = {stage.command: stage.config.partition(":") for stage in STAGES}
    wrong = {command: f"{module}:{name}" for command, (module, _, name) in rows.items()
             if homes.get(name) != module}
    assert not wrong, f"stage rows not naming the config's home: {wrong}"


def test_config_modules_load_no_heavy_library():
    """Importing every config module (what --help does) in a fresh interpreter loads none of HEAVY."""
    modules = sorted(set(config_classes().values()) - set(PENDING.values()))
    assert "relsum.lifecycle.config" in modules and "relsum.data.config" in modules
    script = (f"import importlib, json, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
              f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         check=True)
    assert json.loads(out.stdout) == []
