"""Private Kafka, PostgreSQL and Redis servers for the fault-injection suite.

The scenarios kill and restart servers, so they never run against the shared stack of
deploy/local: each session starts its own servers on free ports, their state in one
temporary folder, and removes them at the end. Each server is a child process of the test
session, so `kill -9` reaches exactly it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STACK_SH = REPO / "deploy" / "local" / "stack.sh"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SERVICE_ROLES = ("assignment", "submission", "consensus", "export", "admin")
DATABASE = "consilium"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def wait_for_port(
    port: int, process: subprocess.Popen[bytes] | None, what: str, log: Path
) -> None:
    deadline = time.monotonic() + 90
    while not port_open(port):
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not open port {port} in 90 s; see {log}")
        await asyncio.sleep(0.1)


def as_postgres(*command: str | Path) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run the command as the postgres user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *map(str, command)]
    return [str(part) for part in command]


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A server in its own session (a signal to the test run does not reach it)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True)


def _kill(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(sig)
        process.wait(timeout=60)


@dataclass
class PrivateKafka:
    """One KRaft node started through `stack.sh kafka-run` (the stack's own jars)."""

    root: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        log = self.root / "kafka.out"
        self.process = _spawn(
            [
                str(STACK_SH), "kafka-run", str(self.root), str(self.port),
                str(self.controller_port),
                # The consumer-pause scenario lowers session timeouts below the default floor.
                "group.min.session.timeout.ms=1000",
                # After a kill -9 the node's old registration must lapse before it can
                # register again: seconds, not the default 9.
                "broker.session.timeout.ms=2000",
                "broker.heartbeat.interval.ms=500",
            ],
            log,
        )  # fmt: skip
        await wait_for_port(self.port, self.process, "Kafka", log)

    def kill(self) -> None:
        _kill(self.process)

    def stop(self) -> None:
        _kill(self.process, signal.SIGTERM)


@dataclass
class PrivatePostgres:
    """A PostgreSQL 15 cluster of its own, provisioned with deploy/postgres/init.sql."""

    root: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def dsn(self, role: str) -> str:
        return (
            f"postgresql://consilium_{role}:consilium_{role}@127.0.0.1:{self.port}/{DATABASE}"
            "?sslmode=disable"
        )

    async def create(self) -> None:
        self.root.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        _run(
            as_postgres(
                PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--no-sync",
            )
        )  # fmt: skip
        await self.start()
        self._provision()

    def _provision(self) -> None:
        """init.sql (roles, databases, schemas, the audit log) as the stack applies it; it
        includes schemas.psql by a relative path, so both are copied where postgres reads."""
        sql = self.root / "init"
        sql.mkdir()
        for name in ("init.sql", "schemas.psql"):
            shutil.copy(REPO / "deploy" / "postgres" / name, sql / name)
        psql = ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                "-d", "postgres"]  # fmt: skip
        _run([*psql, "-v", "ON_ERROR_STOP=1", "-f", str(sql / "init.sql")])
        # init.sql also creates the shared stack's test database; this cluster needs one.
        _run([*psql, "-c", f"DROP DATABASE {DATABASE}_test"])

    async def start(self) -> None:
        # fsync off: the scenarios crash the server process, never the machine, and the
        # operating system keeps what was written; synchronous_commit stays on.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c max_connections=200 -c shared_buffers=64MB"
        )
        _run(
            as_postgres(
                PG_BIN / "pg_ctl", "-D", self.data, "-l", self.root / "postgres.log",
                "-o", options, "-w", "-t", "60", "start",
            )
        )  # fmt: skip
        await wait_for_port(self.port, None, "PostgreSQL", self.root / "postgres.log")

    def stop(self, mode: str = "fast") -> None:
        _run(as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"))


@dataclass
class PrivateRedis:
    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        log = self.root / "redis.log"
        self.process = _spawn(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--dir", str(self.root),
             "--logfile", str(log)],
            self.root / "redis.out",
        )  # fmt: skip
        await wait_for_port(self.port, self.process, "Redis", log)

    def kill(self) -> None:
        _kill(self.process)


@dataclass
class PrivateServers:
    root: Path
    kafka: PrivateKafka
    postgres: PrivatePostgres
    redis: PrivateRedis

    @classmethod
    async def start(cls, root: Path) -> PrivateServers:
        (root / "kafka").mkdir(parents=True)
        (root / "redis").mkdir()
        servers = cls(
            root,
            PrivateKafka(root / "kafka"),
            PrivatePostgres(root / "postgres"),
            PrivateRedis(root / "redis"),
        )
        try:
            await asyncio.gather(
                servers.kafka.start(), servers.postgres.create(), servers.redis.start()
            )
        except BaseException:
            servers.close()
            raise
        return servers

    def close(self) -> None:
        self.kafka.kill()
        self.redis.kill()
        if (self.postgres.data / "postmaster.pid").exists():
            self.postgres.stop("immediate")
