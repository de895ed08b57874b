"""What a `reco train` run shows in MLflow's UI besides its metrics: the comparison of the model with
the baselines and candidates (a table), the gate's scores with their intervals (a table), and two
figures: NDCG@10 per context and segment for every model, and the gate's scores per context.

Plain pandas frames and matplotlib figures (no pyplot: no GUI backend, no global state), both
imported when called; training.pipeline.record logs them with `mlflow.log_table` and `mlflow.log_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from training.gate import compare, paired_bootstrap
from training.metrics import TABLE_METRICS
from training.pipeline.gating import CHALLENGER, Gated

if TYPE_CHECKING:
    import pandas as pd

BASELINES = ("popularity", "frequency")
# (label, metric) of the figure's groups: the three contexts, then home split by item and customer segment.
FIGURE_GROUPS = (
    ("home", "home/ndcg_at_10"),
    ("buy-again", "buy-again/ndcg_at_10"),
    ("discover", "discover/ndcg_at_10"),
    ("home:\nrepeat items", "home/repeat/ndcg_at_10"),
    ("home:\nnew items", "home/new/ndcg_at_10"),
    ("home:\nnew customers", "home/new_customers/ndcg_at_10"),
    ("home:\nreturning customers", "home/returning_customers/ndcg_at_10"),
)


def roles_of(results: dict[str, dict[str, float]], *, model: str) -> dict[str, str]:
    """Each evaluated name's role: the model trained, a baseline (popularity, personal frequency) or
    one of the other collaborative candidates fitted on the way."""
    return {name: "model" if name == model else "baseline" if name in BASELINES else "candidate" for name in results}


def comparison_frame(results: dict[str, dict[str, float]], *, roles: dict[str, str]) -> pd.DataFrame:
    """One row per evaluated model (its role, the test customers, the table's metrics), the model first."""
    import pandas as pd

    order = sorted(results, key=lambda n: ("model", "baseline", "candidate").index(roles[n]))
    rows = []
    for name in order:
        values = results[name]
        row: dict[str, Any] = {"model": name, "role": roles[name], "customers": int(values.get("home/customers", 0))}
        row.update({m: round(values[m], 4) if m in values else None for m in TABLE_METRICS})
        rows.append(row)
    return pd.DataFrame(rows)


def gate_frame(gated: Gated) -> pd.DataFrame:
    """One row per (model, context) scored by the gate: the mean NDCG@10 over the gate customers with a
    target in the context and its interval; for the champion rows, the challenger's paired difference
    with it and that interval (the same bootstrap as the decision's)."""
    import pandas as pd

    scores = gated.scores
    if CHALLENGER not in scores:
        return pd.DataFrame()
    decision = gated.decision
    resamples, seed = int(decision["resamples"]), int(decision["seed"])
    challenger = scores[CHALLENGER]
    rows = []
    for context, values in challenger.items():
        own = paired_bootstrap(values, values, resamples=resamples, seed=seed)
        rows.append(_row(CHALLENGER, context, own.customers, own.challenger, own.challenger_low, own.challenger_high))
    for name, by in scores.items():
        if name == CHALLENGER:
            continue
        for context, c in compare(challenger, by, resamples=resamples, seed=seed).items():
            row = _row(name, context, c.customers, c.reference, c.reference_low, c.reference_high)
            row.update(difference=c.difference, difference_low=c.difference_low, difference_high=c.difference_high)
            rows.append(row)
    return pd.DataFrame(rows)


def _row(model: str, context: str, customers: int, score: float, low: float, high: float) -> dict[str, Any]:
    nan = math.nan
    return {
        "model": model,
        "context": context,
        "customers": customers,
        "score": score,
        "low": low,
        "high": high,
        "difference": nan,
        "difference_low": nan,
        "difference_high": nan,
    }


def metrics_figure(results: dict[str, dict[str, float]], *, roles: dict[str, str]) -> Any:
    """Grouped bars: NDCG@10 of every model per context and, for home, per item and customer segment."""
    from matplotlib.figure import Figure

    names = list(comparison_frame(results, roles=roles)["model"])
    figure = Figure(figsize=(11, 4.8), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(FIGURE_GROUPS))
    for i, name in enumerate(names):
        heights = [results[name].get(metric, math.nan) for _, metric in FIGURE_GROUPS]
        label = f"{name} ({roles[name]})"
        axes.bar(x + (i - (len(names) - 1) / 2) * width, heights, width, label=label)
    axes.set_xticks(x, [label for label, _ in FIGURE_GROUPS])
    axes.set_ylabel("NDCG@10 on the test customers")
    axes.set_title("Every model per context and segment (no bar: the model does not serve that list)")
    axes.legend(fontsize="small", ncols=2)
    axes.grid(axis="y", alpha=0.3)
    return figure


def gate_figure(rows: pd.DataFrame, *, decision: dict[str, Any]) -> Any:
    """The gate's scores per context, each model a point with its interval; the title gives the outcome."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4.5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    contexts = list(dict.fromkeys(rows["context"]))
    models = list(dict.fromkeys(rows["model"]))
    x = np.arange(len(contexts))
    for i, model in enumerate(models):
        part = rows[rows["model"] == model].set_index("context").reindex(contexts)
        offset = (i - (len(models) - 1) / 2) * 0.18
        error = np.vstack([part["score"] - part["low"], part["high"] - part["score"]])
        axes.errorbar(x + offset, part["score"], yerr=error, fmt="o", capsize=4, label=model)
    axes.set_xticks(x, contexts)
    axes.set_ylabel(f"{decision['metric']} on {decision.get('gate_customers', 0):,} gate customers")
    outcome = "promoted" if decision["promoted"] else "not promoted"
    axes.set_title(f"Gate: {outcome} ({decision.get('rule') or decision['mode']}), {decision['level']:.0%} intervals")
    axes.legend(fontsize="small")
    axes.grid(axis="y", alpha=0.3)
    return figure


DESCRIPTION_METRICS = (
    "home/ndcg_at_10",
    "home/recall_at_10",
    "home/repeat/ndcg_at_10",
    "home/new/ndcg_at_10",
    "buy-again/ndcg_at_10",
    "discover/ndcg_at_10",
    "discover/recall_at_20",
)


def run_description(
    *,
    results: dict[str, dict[str, float]],
    roles: dict[str, str],
    gate_rows: pd.DataFrame,
    decision: dict[str, Any],
    figures: Sequence[str] = (),
    run_id: str = "",
) -> str:
    """The run's description (Markdown, the first thing its page shows): the gate's outcome and scores,
    the comparison of every model on the test customers, then the run's figures (`figures`: artifact
    paths, shown through the tracking server's get-artifact endpoint, relative to the UI's address)."""
    outcome = "promoted to @champion" if decision["promoted"] else "not promoted"
    lines = [f"**Gate: {outcome}.** {decision['reason']}.", ""]
    if len(gate_rows):
        lines += [
            f"| gate ({decision.get('gate_customers', 0):,} customers) | context | {decision['metric']} "
            f"[{decision['level']:.0%} interval] | challenger − this model [interval] |",
            "|---|---|---|---|",
        ]
        for row in gate_rows.to_dict("records"):
            score = f"{row['score']:.4f} [{row['low']:.4f}, {row['high']:.4f}]"
            diff = (
                "–"
                if math.isnan(row["difference"])
                else f"{row['difference']:+.4f} [{row['difference_low']:+.4f}, {row['difference_high']:+.4f}]"
            )
            lines.append(f"| {row['model']} | {row['context']} | {score} | {diff} |")
        lines.append("")
    frame = comparison_frame(results, roles=roles)
    lines += [
        "| test: model | role | " + " | ".join(DESCRIPTION_METRICS) + " |",
        "|---|---|" + "---|" * len(DESCRIPTION_METRICS),
    ]
    for row in frame.to_dict("records"):
        values = " | ".join(_number(row.get(m)) for m in DESCRIPTION_METRICS)
        lines.append(f"| {row['model']} | {row['role']} | {values} |")
    for path in figures:
        lines += ["", f"![{path}](get-artifact?path={quote(path, safe='')}&run_uuid={run_id})"]
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    """A metric for a Markdown cell; – where the model has none (it does not serve that list)."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
