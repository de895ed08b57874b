"""MLflow pyfunc wrapper, logged as *code* (models-from-code), so loading it never unpickles anything.

`mlflow models serve -m models:/reco@champion --env-manager local` answers
`{"dataframe_records": [{"user_id": "C1", "k": 5, "context": "home"}]}` with one row per
recommended item: user_id, rank, item_id, score; a bad request gets a 400 with one sentence. This
file is only read by MLflow; the rest of the code base does not import it. The model carries the
code it imports (`training.core`, `training.registry.bundle_file`: numpy and scipy only) as its
`code_paths`, so it loads where this repository is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from training.core import columns as col
from training.core.blend import check_context
from training.core.errors import UnknownContext

MAX_K = 1000


class RecoPyfunc(PythonModel):
    """Recommendations from the model bundle logged beside this file."""

    def load_context(self, context: Any) -> None:
        """Load the bundle (npz + json) once."""
        from training.registry.bundle_file import load_bundle_dir

        self.bundle = load_bundle_dir(Path(context.artifacts["bundle"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One output row per (customer, rank); unknown customers get the fallback list. A request the
        model cannot answer (no user_id, a bad k or context) is refused with one sentence (MLflow's
        INVALID_PARAMETER_VALUE: `mlflow models serve` answers it with a 400)."""
        params = params or {}
        frame = pd.DataFrame(model_input)
        if col.USER_ID not in frame:
            _refuse(f"Each record needs a {col.USER_ID}.")
        # Optional columns arrive as NaN/None when a record leaves them out.
        k_default = _k(params.get("k") or 10)
        context_default = _context(params.get("context") or "home")
        k = frame["k"] if "k" in frame else pd.Series([None] * len(frame), index=frame.index)
        context = frame["context"] if "context" in frame else pd.Series([None] * len(frame), index=frame.index)
        requests = pd.DataFrame(
            {
                col.USER_ID: frame[col.USER_ID].astype(str),
                "k": [_k(v) if pd.notna(v) else k_default for v in k],
                "context": [_context(v) if pd.notna(v) and str(v) else context_default for v in context],
            }
        )
        rows: list[dict[str, Any]] = []
        ranked_by_row: dict[int, list[tuple[str, float]]] = {}
        # One vectorized call per (k, context) group.
        for (k_value, context_name), group in requests.groupby(["k", "context"], sort=False):
            ranked = self.bundle.recommend_batch(group[col.USER_ID].tolist(), k=int(k_value), context=str(context_name))
            ranked_by_row.update(zip(group.index.tolist(), ranked, strict=True))
        for index, user_id in requests[col.USER_ID].items():
            for rank, (item_id, score) in enumerate(ranked_by_row[index], start=1):
                rows.append({col.USER_ID: user_id, "rank": rank, col.ITEM_ID: item_id, "score": score})
        return pd.DataFrame(rows, columns=[col.USER_ID, "rank", col.ITEM_ID, "score"])


def _refuse(message: str) -> NoReturn:
    raise MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _context(value: Any) -> str:
    """A context name, or one sentence refusing it."""
    try:
        return check_context(str(value))
    except UnknownContext as exc:
        _refuse(str(exc))


def _k(value: Any) -> int:
    """A list length in 1..MAX_K, or one sentence refusing it."""
    try:
        k = int(value)
    except (TypeError, ValueError):
        _refuse(f"k must be a whole number from 1 to {MAX_K}, not {value!r}.")
    if not 1 <= k <= MAX_K:
        _refuse(f"k must be a whole number from 1 to {MAX_K}, not {k}.")
    return k


mlflow.models.set_model(RecoPyfunc())
