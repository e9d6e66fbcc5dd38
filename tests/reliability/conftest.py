"""One private Kafka, PostgreSQL and Redis per session, the four services as processes on
them, the load generator, and the report of every scenario's runs."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.submission.clients import register_client
from services.submission.settings import SubmissionConfig
from shared.db.pool import connect
from shared.kafka.admin import ensure_topics
from shared.settings import StackSettings
from tests import factories
from tests.reliability.harness import Harness
from tests.reliability.invariants import Topics
from tests.reliability.load import Generator
from tests.reliability.processes import Services
from tests.reliability.report import Report
from tests.reliability.servers import PrivateServers

QUICK_RUNS = 5
LONG_RUNS = 20


@pytest.fixture(scope="session")
async def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    # Not under pytest's tmp dir: the postgres user must be able to reach the data folder.
    root = Path(tempfile.mkdtemp(prefix="consilium-reliability-"))
    os.chmod(root, 0o755)
    outdir = tmp_path_factory.mktemp("reliability")
    servers = await PrivateServers.start(root)
    services = Services(servers, outdir / "logs")
    generator = Generator(servers.kafka.bootstrap)
    topics = Topics.following(servers.kafka.bootstrap)
    report = Report()
    try:
        await ensure_topics(StackSettings(kafka_bootstrap=servers.kafka.bootstrap))
        await services.start()
        conn = await connect(servers.postgres.dsn("submission"), "submission")
        try:
            await register_client(
                conn,
                SubmissionConfig().master,
                factories.CLIENT_ID,
                all_annotators=True,
                key_id=factories.KEY_ID,
                salt=factories.KEY_SALT,
            )
        finally:
            await conn.close()
        await generator.start()
        runs = LONG_RUNS if request.config.getoption("--long") else QUICK_RUNS
        yield Harness(servers, services, generator, topics, report, runs, outdir)
    finally:
        await topics.close()
        await generator.stop()
        services.stop()
        servers.close()
        shutil.rmtree(root, ignore_errors=True)
        if report.results:
            _publish(request, outdir, report)


PUBLISHED = pytest.StashKey[tuple[Report, Path]]()


def _publish(request: pytest.FixtureRequest, outdir: Path, report: Report) -> None:
    path = outdir / "reliability.md"
    path.write_text(f"{report.table()}\n\n{report.runs()}\n")
    request.config.stash[PUBLISHED] = (report, path)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The table at the end of the run (per-run lines in the file it names)."""
    if PUBLISHED not in config.stash:
        return
    report, path = config.stash[PUBLISHED]
    terminalreporter.section("fault injection")
    for line in report.table().splitlines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"every run: {path}")
