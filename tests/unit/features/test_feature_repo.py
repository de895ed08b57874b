"""feature_repo/ is declarative: its files import Feast, the standard library, each other, and the
one names module, nothing else of the project (Feast imports every file on `feast apply`)."""

from __future__ import annotations

import ast
import sys

from training.features.store import FEATURE_REPO, REPO_MODULES


def test_definitions_import_only_feast_and_the_names_module() -> None:
    allowed = {"feast", "training.features.names", *REPO_MODULES}
    files = sorted(FEATURE_REPO.glob("*.py"))
    assert {f.stem for f in files} == set(REPO_MODULES)
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert name in allowed or top == "feast" or top in sys.stdlib_module_names, f"{path.name}: {name}"
