"""Start the four services as child processes when they are not already running."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from asyncio.subprocess import Process
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.settings import SERVICES, service_settings


@dataclass
class Launcher:
    log_dir: Path
    started: dict[str, Process] = field(default_factory=dict)

    async def ensure_running(self, timeout: float = 90.0) -> list[str]:
        """Start each service whose /healthz does not answer; wait until all are ready."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            if await _get(name, "/healthz") is None:
                with (self.log_dir / f"{name}.log").open("ab") as log:
                    self.started[name] = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "services.cli", "serve", name,
                        stdout=log,
                        stderr=asyncio.subprocess.STDOUT,
                        start_new_session=True,
                    )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = {name: await _get(name, "/readyz") for name in SERVICES}
            if all(status == 200 for status in statuses.values()):
                return list(self.started)
            for name, process in self.started.items():
                if process.returncode is not None:
                    log_file = self.log_dir / f"{name}.log"
                    raise RuntimeError(f"{name} exited with {process.returncode}; see {log_file}")
            await asyncio.sleep(0.5)
        raise TimeoutError(f"services not ready after {timeout:.0f}s; logs in {self.log_dir}")

    async def stop(self) -> None:
        """SIGTERM the services this launcher started; they shut down gracefully."""
        for process in self.started.values():
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in self.started.values():
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()


async def _get(service: str, path: str) -> int | None:
    settings = service_settings(service)
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            response = await client.get(f"http://{settings.http_host}:{settings.http_port}{path}")
            return response.status_code
    except httpx.HTTPError:
        return None
