"""A minimal ASGI app per service: /healthz, /readyz and /metrics, and the routes a
service mounts beside them (any ASGI app, e.g. FastAPI)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.metrics import METRICS

ReadinessCheck = Callable[[], Awaitable[dict[str, str]]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# Any ASGI application (FastAPI and Starlette type scope, receive and send their own way).
ASGIApp = Callable[..., Awaitable[None]]


def make_app(
    service: str, readiness: ReadinessCheck, routes: ASGIApp | None = None
) -> Callable[..., Awaitable[None]]:
    """/healthz answers while the process runs; /readyz only when every check says ok;
    any other path goes to `routes` when the service has them."""

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
        elif routes is not None:
            await routes(scope, receive, send)
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
