"""`consilium task-schema FILE`: the JSON Schema of one task version's label events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shared.events import TaskDefined
from shared.task_schema import task_label_schema


def task_schema_command(
    file: Annotated[Path, typer.Argument(help="JSON task definition")],
    out: Annotated[Path | None, typer.Option(help="write here instead of stdout")] = None,
) -> None:
    """Write the JSON Schema a front-end validates this task's label events against."""
    task = TaskDefined.model_validate(json.loads(file.read_text()))
    text = json.dumps(task_label_schema(task), indent=2, sort_keys=True) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(str(out))
