"""What every scenario works with: the private servers, the services, the generator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.reliability.invariants import Topics
from tests.reliability.load import Generator
from tests.reliability.processes import Services
from tests.reliability.report import Report
from tests.reliability.servers import PrivateServers


@dataclass
class Harness:
    servers: PrivateServers
    services: Services
    generator: Generator
    topics: Topics
    report: Report
    runs: int
    outdir: Path
