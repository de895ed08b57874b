"""feature_repo/ is declarative and stands alone: its files import only Feast (and the standard
library, and each other), and the names they spell are those training/features/names.py spells."""

from __future__ import annotations

import ast
import sys

from training.features import names
from training.features.store import FEATURE_REPO, repo_objects
from training.settings import load_settings

REPO_MODULES = {p.stem for p in FEATURE_REPO.glob("*.py")}


def test_the_repo_imports_only_feast() -> None:
    for path in FEATURE_REPO.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for module in modules:
                    top = module.split(".")[0]
                    assert top == "feast" or top in REPO_MODULES or top in sys.stdlib_module_names, (path.name, module)


def test_the_repo_and_names_spell_the_same_views_and_services(tmp_path) -> None:
    from feast import FeatureService, FeatureView

    objects = repo_objects(load_settings(home=tmp_path))
    assert {o.name for o in objects if isinstance(o, FeatureView)} == set(names.ALL_VIEWS)
    assert {o.name for o in objects if isinstance(o, FeatureService)} == {
        names.RECOMMEND_SERVICE,
        names.ITEMS_SERVICE,
        names.RECAP_SERVICE,
    }
    keys = {k for o in objects if isinstance(o, FeatureView) for k in o.entities}
    assert keys == {"customer", "item", "year"}
