"""`consilium`: serve services, migrate, export schemas, manage topics, run the demo."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from services.cli import audit as audit_cli
from services.cli import clients as clients_cli
from services.cli.bench_cmd import bench_command
from services.cli.dlq import app as dlq_app
from services.cli.export_cmd import export_command, replay_command
from services.cli.reestimate_cmd import reestimate_command
from services.cli.tasks import task_schema_command
from services.consensus.evaluation.cli import eval_command
from shared.settings import SERVICES, StackSettings, service_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console()
REPO_ROOT = Path(__file__).resolve().parents[2]


@app.command()
def serve(service: Annotated[str, typer.Argument(help=f"one of {', '.join(SERVICES)}")]) -> None:
    """Run one service until SIGTERM/SIGINT (migrates its schema first)."""
    from services.cli.registry import definition
    from shared.runtime import run_service

    run_service(definition(service), service_settings(service))


@app.command()
def migrate(
    services: Annotated[list[str] | None, typer.Argument(help="default: all four")] = None,
) -> None:
    """Apply pending migrations to each service's schema."""
    from services.cli.registry import definition
    from shared.db.migrate import migrate as apply

    async def run() -> None:
        for name in services or SERVICES:
            spec = definition(name)
            applied = await apply(service_settings(name).database_url, spec.name, spec.migrations)
            console.print(f"{name}: {'applied ' + ', '.join(applied) if applied else 'up to date'}")

    asyncio.run(run())


@app.command()
def schemas(
    out: Annotated[Path, typer.Option(help="folder to write into")] = Path("schemas"),
) -> None:
    """Write one JSON Schema per topic, generated from the event models."""
    from services.cli.schemas import write_schemas

    for path in write_schemas(out):
        console.print(str(path))


@app.command()
def status() -> None:
    """One screen: infrastructure, each service's readiness, consumer lag, queue depths."""
    from services.cli.status import status_screen

    raise typer.Exit(0 if asyncio.run(status_screen()) else 1)


@app.command()
def asyncapi(
    out: Annotated[Path, typer.Option(help="file to write")] = Path("schemas/asyncapi.json"),
) -> None:
    """Write the AsyncAPI 3.0 document, generated from the topics and the event models."""
    from services.cli.asyncapi import asyncapi_document

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n")
    console.print(str(out))


@app.command()
def topics(
    ensure: Annotated[bool, typer.Option(help="create the missing topics")] = False,
) -> None:
    """List the topics (name, partitions, key); with --ensure, create missing ones."""
    from shared.kafka.admin import ensure_topics
    from shared.topics import ALL_TOPICS

    stack = StackSettings()
    table = Table("topic", "partitions", "key", "description")
    for topic in ALL_TOPICS:
        table.add_row(
            topic.qualified(stack.topic_prefix), str(topic.partitions), topic.key, topic.description
        )
    console.print(table)
    if ensure:
        created = asyncio.run(ensure_topics(stack))
        console.print(f"created: {', '.join(created) if created else 'none'}")


@app.command("annotators")
def annotators(
    task: Annotated[str, typer.Option(help="task id the annotators are qualified for")],
    ids: Annotated[list[str], typer.Argument(help="pseudonymous annotator ids")],
    role: Annotated[str, typer.Option(help="reader or adjudicator")] = "reader",
    site: Annotated[
        str | None, typer.Option(help="their site (no cases from it when the task forbids)")
    ] = None,
    tier: Annotated[int, typer.Option(min=1, help="adjudication tier they serve")] = 1,
    specialty: Annotated[
        str, typer.Option(help="adjudication queue specialty they serve")
    ] = "general",
    max_open: Annotated[
        int | None, typer.Option(min=1, help="their own cap on open assignments")
    ] = None,
) -> None:
    """Register annotators (pseudonymous ids) as qualified for a task (docs/ASSIGNMENT.md)."""
    from services.assignment.admin import AnnotatorProfile, register_annotators

    profile = AnnotatorProfile(site=site, tier=tier, specialty=specialty, max_open=max_open)
    dsn = service_settings("assignment").database_url
    asyncio.run(register_annotators(dsn, task, ids, role, profile))
    console.print(f"registered {len(ids)} {role}(s) for {task}")


@app.command("define-task")
def define_task(
    file: Annotated[Path, typer.Argument(help="JSON task definition (see docs/TASKS.md)")],
) -> None:
    """Publish a task definition (a new version of a task) on tasks.defined.v1."""
    from services.cli.publish import publish_task
    from shared.events import TaskDefined

    task = TaskDefined.model_validate(json.loads(file.read_text()))
    asyncio.run(publish_task(StackSettings(), task))
    console.print(f"published {task.task_id} v{task.version}")


@app.command()
def demo(
    dataset: Annotated[Path, typer.Option(help="folder with answers.csv and truth.csv")] = (
        REPO_ROOT.parent / "shared" / "datasets" / "chexpert_test_multireader"
    ),
    studies: Annotated[int | None, typer.Option(help="replay only the first N studies")] = None,
    seed: Annotated[int, typer.Option(help="seed of the label replay order")] = 7,
    timeout: Annotated[float, typer.Option(help="seconds to wait for consensus")] = 600.0,
    start_services: Annotated[
        bool, typer.Option(help="start services that are not running")
    ] = True,
    method: Annotated[str, typer.Option(help="consensus method: mv, weighted or ds")] = "ds",
    threshold: Annotated[float, typer.Option(help="posterior confidence to reach")] = 0.9,
    run_tag: Annotated[
        str, typer.Option(help="replay as a new run (fresh ids) instead of reusing this stack's")
    ] = "",
    initial_overlap: Annotated[
        int, typer.Option(min=1, help="readers per item before consensus may ask for more")
    ] = 2,
    adjudicate: Annotated[
        bool, typer.Option(help="answer adjudications as a simulated adjudicator")
    ] = True,
) -> None:
    """Replay a real multi-reader dataset through the running services and score it."""
    from services.cli.demo import run_demo
    from services.cli.demo_plan import Method

    if method not in ("mv", "weighted", "ds"):
        raise typer.BadParameter("method is mv, weighted or ds", param_hint="--method")
    if not (dataset / "answers.csv").is_file():
        raise typer.BadParameter(f"no answers.csv in {dataset}", param_hint="--dataset")

    result = asyncio.run(
        run_demo(
            dataset,
            studies=studies,
            seed=seed,
            timeout=timeout,
            start_services=start_services,
            method=cast(Method, method),
            threshold=threshold,
            run_tag=run_tag,
            initial_overlap=initial_overlap,
            adjudicate=adjudicate,
        )
    )
    raise typer.Exit(0 if result.complete else 1)


app.command("eval")(eval_command)
app.command("bench")(bench_command)
app.add_typer(dlq_app, name="dlq")
app.add_typer(clients_cli.app, name="clients")
app.add_typer(audit_cli.app, name="audit")
app.command("task-schema")(task_schema_command)
app.command("export")(export_command)
app.command("replay")(replay_command)
app.command("reestimate")(reestimate_command)
