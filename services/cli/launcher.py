"""Start the four services as child processes when they are not already running."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.settings import SERVICES, service_settings


@dataclass
class Launcher:
    log_dir: Path
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    async def ensure_running(self, timeout: float = 90.0) -> list[str]:
        """Start each service whose /healthz does not answer; wait until all are ready."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            if await _get(name, "/healthz") is None:
                log = (self.log_dir / f"{name}.log").open("ab")
                self.started[name] = subprocess.Popen(
                    [sys.executable, "-m", "services.cli", "serve", name],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=os.environ.copy(),
                    start_new_session=True,
                )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = {name: await _get(name, "/readyz") for name in SERVICES}
            if all(status == 200 for status in statuses.values()):
                return list(self.started)
            for name, process in self.started.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {process.returncode}; see {self.log_dir / (name + '.log')}"
                    )
            await asyncio.sleep(0.5)
        raise TimeoutError(f"services not ready after {timeout:.0f}s; logs in {self.log_dir}")

    def stop(self) -> None:
        for process in self.started.values():
            process.terminate()
        for process in self.started.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


async def _get(service: str, path: str) -> int | None:
    settings = service_settings(service)
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            response = await client.get(f"http://{settings.http_host}:{settings.http_port}{path}")
            return response.status_code
    except httpx.HTTPError:
        return None
