"""Render an evaluation document: a rich table, JSON, and an accuracy-vs-labels plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=False, allow_nan=False, default=str)


def print_table(document: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    numeric = document.get("kind") == "numeric"
    table = Table(title=f"{document['dataset']}: {document['labels']} labels")
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
    Console().print(table)


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def plot(document: dict[str, Any], path: Path) -> None:
    """Accuracy against labels used, one point per method (dynamic runs use fewer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    metric = "mae" if document.get("kind") == "numeric" else "accuracy"
    for name, row in document["results"].items():
        if row.get(metric) is None:
            continue
        marker = "o" if name.startswith("consilium") else "s"
        ax.scatter(row["labels_used"], row[metric], marker=marker, label=name)
    ax.set_xlabel("labels used")
    ax.set_ylabel(metric)
    ax.set_title(f"{document['dataset']}: {metric} against labels used")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
