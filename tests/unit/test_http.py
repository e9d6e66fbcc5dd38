"""The per-service HTTP app: health, readiness and metrics, and a service's own routes."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from shared.http import make_app


async def _ready() -> dict[str, str]:
    return {"postgres": "ok"}


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://svc")  # type: ignore[arg-type]


async def test_a_service_mounts_its_routes_beside_health_readiness_and_metrics() -> None:
    routes = FastAPI()

    @routes.get("/annotators/{annotator_id}/next")
    async def next_assignment(annotator_id: str) -> dict[str, str]:
        return {"annotator_id": annotator_id}

    async with _client(make_app("assignment", _ready, routes)) as client:
        assert (await client.get("/annotators/a1/next")).json() == {"annotator_id": "a1"}
        assert (await client.get("/healthz")).json()["service"] == "assignment"
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404


async def test_without_routes_unknown_paths_are_not_found() -> None:
    async with _client(make_app("export", _ready)) as client:
        assert (await client.get("/annotators/a1/next")).status_code == 404
