"""`consilium eval DATASET_DIR`: replay a real multi-rater dataset, compare with crowd-kit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.consensus.evaluation.settings import DynamicSettings

DEFAULTS = DynamicSettings()


def eval_command(
    dataset_dir: Annotated[Path, typer.Argument(help="Folder with answers.csv and truth.csv")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table")
    ] = False,
    policy: Annotated[
        str, typer.Option("--policy", help="fixed: use every label; dynamic: also simulate")
    ] = "fixed",
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write accuracy vs labels used (PNG)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the replay order")] = 0,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Replay with each of these seeds (0-4 or 0,2,5; instead of --seed) and "
            "summarise: mean, min and max accuracy; dynamic runs against their fixed run"
        ),
    ] = None,
    min_labels: Annotated[
        int, typer.Option(help="Dynamic: labels before reaching")
    ] = DEFAULTS.min_labels,
    max_labels: Annotated[
        int, typer.Option(help="Dynamic: labels before contesting (0: the dataset's overlap)")
    ] = DEFAULTS.max_labels,
    threshold: Annotated[
        float, typer.Option(help="Dynamic: posterior confidence")
    ] = DEFAULTS.threshold,
    assign: Annotated[
        str,
        typer.Option(help="Dynamic: 'informed' asks the most informative annotator; 'seeded'"),
    ] = DEFAULTS.assign,
    pooled_prior: Annotated[
        bool,
        typer.Option(help="weighted/ds: centre each annotator's prior on the crowd's matrix"),
    ] = DEFAULTS.pooled_prior,
    flip_risk: Annotated[
        float,
        typer.Option(help="Dynamic: reach only if P(majority of max_labels flips) <= this"),
    ] = DEFAULTS.flip_risk,
    stop_gain: Annotated[
        float,
        typer.Option(
            help="Dynamic: also reach once the labels up to max_labels could add at most "
            "this much expected accuracy (0 = off)"
        ),
    ] = DEFAULTS.stop_gain,
    stop_gain_floor: Annotated[
        float, typer.Option(help="Dynamic: the gain rule applies from this confidence on")
    ] = DEFAULTS.stop_gain_floor,
    stop_gain_share: Annotated[
        float,
        typer.Option(help="Dynamic: ...and where the gain is at most this share of the error"),
    ] = DEFAULTS.stop_gain_share,
    hold_dissent: Annotated[
        float,
        typer.Option(
            help="Dynamic: do not reach while the minority holds this share of the votes (0 = off)"
        ),
    ] = DEFAULTS.hold_dissent_share,
    hold_dissent_until: Annotated[
        float, typer.Option(help="Dynamic: ...until the item has this share of max_labels")
    ] = DEFAULTS.hold_dissent_until,
    crowdkit: Annotated[bool, typer.Option(help="Also fit crowd-kit's methods")] = True,
    gold_share: Annotated[
        float,
        typer.Option(
            help="Give the engine this share of the tasks with truth as gold (control) items:"
            " all their labels are used, they teach reliability against the known answer,"
            " and every method is scored on the other tasks"
        ),
    ] = 0.0,
) -> None:
    """Replay DATASET_DIR through the engine one label at a time and report accuracy."""
    from services.consensus.evaluation.dataset import load_dataset
    from services.consensus.evaluation.report import plot as write_plot
    from services.consensus.evaluation.report import to_json
    from services.consensus.evaluation.runner import evaluate
    from services.consensus.evaluation.seeds import parse_seeds, seeded_document

    if policy not in ("fixed", "dynamic"):
        raise typer.BadParameter("--policy is 'fixed' or 'dynamic'")
    if assign not in ("informed", "seeded"):
        raise typer.BadParameter("--assign is 'informed' or 'seeded'")
    replays = [seed]
    if seeds is not None:
        if plot is not None:
            raise typer.BadParameter("--plot draws one replay: give it with --seed, not --seeds")
        try:
            replays = parse_seeds(seeds)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--seeds") from error
    try:
        dataset = load_dataset(dataset_dir)
    except (OSError, ValueError) as error:  # no such folder, no CSV, wrong columns, no rows
        raise typer.BadParameter(str(error), param_hint="DATASET_DIR") from error
    dynamic = (
        DynamicSettings(
            min_labels=min_labels,
            max_labels=max_labels,
            threshold=threshold,
            assign=assign,
            pooled_prior=pooled_prior,
            flip_risk=flip_risk,
            stop_gain=stop_gain,
            stop_gain_floor=stop_gain_floor,
            stop_gain_share=stop_gain_share,
            hold_dissent_share=hold_dissent,
            hold_dissent_until=hold_dissent_until,
        )
        if policy == "dynamic"
        else None
    )
    try:
        documents = [
            evaluate(dataset, seed=s, dynamic=dynamic, crowdkit=crowdkit, gold_share=gold_share)
            for s in replays
        ]
    except ValueError as error:  # a policy the engine refuses, e.g. a threshold above 1
        raise typer.BadParameter(str(error)) from error
    document = documents[0] if seeds is None else seeded_document(documents)
    if json_output:
        typer.echo(to_json(document))
    elif seeds is None:
        from services.consensus.evaluation.report import print_table

        print_table(document)
    else:
        from services.consensus.evaluation.report import print_summary

        print_summary(document)
    if plot is not None:
        write_plot(document, plot)


def main() -> None:
    """Entry point for `python -m services.consensus.evaluation`."""
    app = typer.Typer(add_completion=False)
    app.command()(eval_command)
    app()
