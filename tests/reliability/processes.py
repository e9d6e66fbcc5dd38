"""The four services as real processes (`consilium serve NAME`) on the private servers,
so a scenario can kill -9, pause and resume exactly one of them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.settings import SERVICES
from tests.reliability.servers import PrivateServers, free_port

# The consumer-pause scenario stops a service past its group session; short timeouts keep
# that, and every rebalance after a kill, to seconds (the private broker allows them).
SESSION_TIMEOUT_MS = 3000
HEARTBEAT_INTERVAL_MS = 600


def service_environment(servers: PrivateServers, name: str, http_port: int) -> dict[str, str]:
    """A service's settings as CONSILIUM_* variables, pointing at the private servers."""
    prefix = f"CONSILIUM_{name.upper()}_"
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("CONSILIUM_")},
        "CONSILIUM_KAFKA_BOOTSTRAP": servers.kafka.bootstrap,
        "CONSILIUM_REDIS_URL": servers.redis.url,
        "CONSILIUM_TOPIC_PREFIX": "",
        "CONSILIUM_LOG_LEVEL": "INFO",
        f"{prefix}DATABASE_URL": servers.postgres.dsn(name),
        f"{prefix}HTTP_PORT": str(http_port),
        f"{prefix}RETRY_BACKOFF_S": "0.05",
        f"{prefix}OUTBOX_POLL_S": "0.1",
        f"{prefix}SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        f"{prefix}HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_INTERVAL_MS),
        # A label that overtakes its item waits this long before `unknown_item`.
        "CONSILIUM_SUBMISSION_ASSIGNMENT_WAIT_S": "4",
        "CONSILIUM_SUBMISSION_SWEEP_EVERY_S": "0.5",
    }


@dataclass
class ServiceProcess:
    name: str
    servers: PrivateServers
    log_dir: Path
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    confirmed: bool = False  # ready since its last start

    def spawn(self) -> None:
        self.starts += 1
        self.confirmed = False
        log = self.log_dir / f"{self.name}.{self.http_port}.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", self.name],
                env=service_environment(self.servers, self.name, self.http_port),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip

    async def ready(self, timeout: float = 60.0) -> None:
        """Until /readyz says every dependency is ok and partitions are assigned."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        async with httpx.AsyncClient(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited; see {self.log_dir}")
                try:
                    response = await client.get(f"http://127.0.0.1:{self.http_port}/readyz")
                    if response.status_code == 200:
                        self.confirmed = True
                        return
                    last = response.text
                except httpx.HTTPError as exc:
                    last = repr(exc)
                await asyncio.sleep(0.2)
        raise TimeoutError(
            f"{self.name} not ready within {timeout:.0f}s ({last}); see {self.log_dir}"
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        """kill -9: no shutdown code runs, in-flight work is lost mid-way."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process dies too
            self.process.kill()
            self.process.wait(timeout=30)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    async def restart(self) -> None:
        self.kill()
        self.spawn()
        await self.ready()


@dataclass
class Services:
    """One process per service, plus extra members of a group for the rebalance storm."""

    servers: PrivateServers
    log_dir: Path
    by_name: dict[str, ServiceProcess] = field(default_factory=dict)

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            self.by_name[name] = ServiceProcess(name, self.servers, self.log_dir)
        for process in self.by_name.values():
            process.spawn()
        await asyncio.gather(*(p.ready() for p in self.by_name.values()))

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.by_name[name]

    def extra(self, name: str) -> ServiceProcess:
        process = ServiceProcess(name, self.servers, self.log_dir)
        process.spawn()
        return process

    async def ensure_running(self) -> None:
        """Restart any service a scenario left dead; wait until each one started since it
        was last seen ready is ready."""
        for process in self.by_name.values():
            if process.process is None or process.process.poll() is not None:
                process.spawn()
        await asyncio.gather(*(p.ready() for p in self.by_name.values() if not p.confirmed))

    def stop(self) -> None:
        """SIGTERM to all at once (they shut down side by side), then wait for each."""
        for process in self.by_name.values():
            if process.process is not None and process.process.poll() is None:
                process.signal(signal.SIGCONT)
                process.signal(signal.SIGTERM)
        for process in self.by_name.values():
            process.terminate()
