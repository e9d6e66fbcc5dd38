"""Render an evaluation document: a rich table, JSON, and an accuracy-vs-labels plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=False, allow_nan=False, default=str)


def _gold(document: dict[str, Any]) -> str:
    share = document.get("gold_share") or 0.0
    return f", {share:.0%} of the tasks gold, scored on the others" if share else ""


def print_table(document: dict[str, Any]) -> None:
    from rich.table import Table

    numeric = document.get("kind") == "numeric"
    table = Table(title=f"{document['dataset']}: {document['labels']} labels{_gold(document)}")
    table.add_column("method")
    for column in ("MAE", "corr") if numeric else ("accuracy", "online acc"):
        table.add_column(column, justify="right")
    table.add_column("labels used", justify="right")
    table.add_column("seconds", justify="right")
    for name, row in document["results"].items():
        if "error" in row:
            table.add_row(name, "error", row["error"], "", "")
            continue
        first, second = ("mae", "correlation") if numeric else ("accuracy", "online_accuracy")
        table.add_row(
            name,
            _fmt(row.get(first)),
            _fmt(row.get(second)),
            str(row.get("labels_used", "")),
            f"{row.get('seconds', 0):.2f}",
        )
    _console().print(table)


def print_summary(document: dict[str, Any]) -> None:
    """The table of several seeded replays (evaluation/seeds.py)."""
    from rich.table import Table

    seeds = document["seeds"]
    target = document["target"]
    table = Table(
        title=f"{document['dataset']}: {document['labels']} labels, seeds {seeds}{_gold(document)}",
        caption=f"vs fixed: mean accuracy points against the same method's fixed run, "
        f"± its standard error over the seeds; met: "
        f"seeds at >= -{target['points']} points with <= {target['label_share']:.0%} of labels "
        f"(*: so are the means); "
        f"gain: mean points over a fixed overlap of the same number of labels",
    )
    table.add_column("method", no_wrap=True)
    for column in ("accuracy", "min-max", "vs fixed", "share", "met", "gain"):
        table.add_column(column, justify="right", no_wrap=True)
    for name, row in document["summary"].items():
        dynamic = "points_vs_fixed_mean" in row
        table.add_row(
            name,
            _fmt(row["accuracy_mean"]),
            f"{row['accuracy_min']:.3f}-{row['accuracy_max']:.3f}",
            _points(row) if dynamic else "",
            f"{row['label_share_mean']:.3f}" if dynamic else "",
            _met(row, len(seeds)) if dynamic else "",
            _signed(row.get("points_vs_same_budget_mean")),
        )
    _console().print(table)


def _points(row: dict[str, Any]) -> str:
    stderr = row["points_vs_fixed_stderr"]
    mean = f"{row['points_vs_fixed_mean']:+.2f}"
    return mean if stderr is None else f"{mean} ± {stderr:.2f}"


def _console() -> Any:
    """Rich's console; piped output gets 120 columns instead of 80, so rows stay whole."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)


def _met(row: dict[str, Any], seeds: int) -> str:
    return f"{row['seeds_meeting_target']}/{seeds}" + ("*" if row["mean_meets_target"] else "")


def _signed(points: float | None) -> str:
    return "" if points is None else f"{points:+.2f}"


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def plot(document: dict[str, Any], path: Path) -> None:
    """Accuracy against labels used, one point per method (dynamic runs use fewer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    metric = "mae" if document.get("kind") == "numeric" else "accuracy"
    # One hue per method: dark for its full-overlap run, light for its dynamic run and for
    # the fixed overlap of that run's budget (crosses); crowd-kit's methods are squares.
    colours = plt.get_cmap("tab20").colors  # type: ignore[attr-defined]
    hues: dict[str, int] = {}
    for name, row in document["results"].items():
        if row.get(metric) is None:
            continue
        method = name.removesuffix("-dynamic").removesuffix("-same-budget")
        hue = hues.setdefault(method, len(hues))
        colour = colours[(2 * hue + (method != name)) % len(colours)]
        marker = "s" if not name.startswith("consilium") else "x" if "same-budget" in name else "o"
        ax.scatter(row["labels_used"], row[metric], marker=marker, color=colour, label=name)
    ax.set_xlabel("labels used")
    ax.set_ylabel(metric)
    ax.set_title(f"{document['dataset']}: {metric} against labels used")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
