"""A minimal ASGI app per service: /healthz, /readyz and /metrics."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.metrics import METRICS

ReadinessCheck = Callable[[], Awaitable[dict[str, str]]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def make_app(service: str, readiness: ReadinessCheck) -> Callable[..., Awaitable[None]]:
    """/healthz answers while the process runs; /readyz only when every check says ok."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope.get("path", "")
        if path == "/healthz":
            await _respond(send, 200, {"status": "ok", "service": service})
        elif path == "/readyz":
            checks = await readiness()
            ok = all(value == "ok" for value in checks.values())
            await _respond(send, 200 if ok else 503, {"ready": ok, "checks": checks})
        elif path == "/metrics":
            await _respond_raw(send, 200, generate_latest(METRICS.registry), CONTENT_TYPE_LATEST)
        else:
            await _respond(send, 404, {"error": "not found"})

    return app


async def _respond(send: Send, status: int, body: dict[str, Any]) -> None:
    await _respond_raw(send, status, json.dumps(body).encode(), "application/json")


async def _respond_raw(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
