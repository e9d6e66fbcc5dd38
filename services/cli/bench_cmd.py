"""`consilium bench`: the end-to-end pipeline benchmark (bench/pipeline.py).

Register with `app.command("bench")(bench_command)` in services/cli/main.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def bench_command(
    labels: Annotated[int, typer.Option(help="labels in the full-speed phase")] = 15_000,
    rates: Annotated[
        str, typer.Option(help="fixed-rate phases, as fractions of the measured maximum")
    ] = "0.25,0.5,0.75",
    out: Annotated[Path | None, typer.Option(help="write the markdown report here")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the figures as JSON here")
    ] = None,
    profile: Annotated[
        Path | None, typer.Option(help="py-spy each service during the full-speed phase")
    ] = None,
    db_sslmode: Annotated[
        str | None, typer.Option(help="sslmode in the services' database URLs")
    ] = None,
    database: Annotated[
        str, typer.Option(help="the services' database (never the dev database)")
    ] = "consilium_test",
) -> None:
    """Drive the four real services with signed synthetic labels and compare them with a
    raw Kafka pass-through of the same hops, in the same run (see docs/BENCHMARKS.md)."""
    # bench/ is not an installed package: it runs from the repository it lives in.
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench.pipeline import main

    argv = ["--labels", str(labels), "--rates", rates, "--database", database]
    if out is not None:
        argv += ["--out", str(out)]
    if json_out is not None:
        argv += ["--json", str(json_out)]
    if profile is not None:
        argv += ["--profile", str(profile)]
    if db_sslmode is not None:
        argv += ["--db-sslmode", db_sslmode]
    main(argv)
