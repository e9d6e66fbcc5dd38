"""The event envelope every Consilium event travels in, and its codec.

An envelope carries the idempotency key (`event_id`), a stable dotted `event_type`, the
payload's `schema_version`, when and by whom it happened, the partitioning key, and the
correlation/causation chain. Trace context travels in Kafka headers, not here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar, cast
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

P = TypeVar("P", bound=BaseModel)
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Envelope(BaseModel, Generic[P]):
    """An event as it travels between services (tolerant reader: unknown fields ignored)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: UUID
    event_type: str = Field(min_length=1, max_length=100)
    schema_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    producer: str = Field(min_length=1, max_length=100)
    key: str = Field(min_length=1, max_length=200)
    correlation_id: UUID
    causation_id: UUID | None = None
    payload: P

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def encode(self) -> bytes:
        """Serialise to the wire format (UTF-8 JSON)."""
        return self.model_dump_json().encode()


class IngressEnvelope(Envelope[P], Generic[P]):
    """An envelope written by a system we do not control: unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class EventSpec(Generic[P]):
    """A registered event type: its current payload model and how older versions upcast."""

    event_type: str
    version: int
    payload: type[P]
    ingress: bool = False
    upcasters: dict[int, Upcaster] = field(default_factory=dict)

    @property
    def envelope(self) -> type[Envelope[P]]:
        base = IngressEnvelope if self.ingress else Envelope
        return cast("type[Envelope[P]]", base[self.payload])

    def wrap(
        self,
        payload: P,
        *,
        key: str,
        producer: str,
        event_id: UUID,
        occurred_at: datetime,
        correlation_id: UUID,
        causation_id: UUID | None = None,
    ) -> Envelope[P]:
        """Put a payload in an envelope; ids and time are inputs so callers stay deterministic."""
        return self.envelope(
            event_id=event_id,
            event_type=self.event_type,
            schema_version=self.version,
            occurred_at=occurred_at,
            producer=producer,
            key=key,
            correlation_id=correlation_id,
            causation_id=causation_id,
            payload=payload,
        )

    def upcast(self, version: int, payload: dict[str, Any]) -> dict[str, Any]:
        """Bring a payload of an older version to the current one, step by step."""
        while version < self.version:
            step = self.upcasters.get(version)
            if step is None:
                raise DecodeError(
                    "unsupported_event",
                    f"{self.event_type} v{version} has no upcaster to v{version + 1}",
                )
            payload = step(payload)
            version += 1
        return payload


class DecodeError(Exception):
    """Raised when bytes are not a valid event; `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EventRegistry:
    """Maps event types to their specs and decodes wire bytes into typed envelopes."""

    def __init__(self, specs: list[EventSpec[Any]]) -> None:
        self._specs = {spec.event_type: spec for spec in specs}
        self._by_payload = {spec.payload: spec for spec in specs}

    def spec_for(self, payload_type: type[BaseModel]) -> EventSpec[Any]:
        return self._by_payload[payload_type]

    def spec(self, event_type: str) -> EventSpec[Any]:
        return self._specs[event_type]

    @property
    def specs(self) -> list[EventSpec[Any]]:
        return list(self._specs.values())

    def decode(self, raw: bytes, *, expect: set[str] | None = None) -> Envelope[Any]:
        """Decode bytes into an envelope whose payload is the current model of its type."""
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DecodeError("undecodable", f"not UTF-8 JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise DecodeError("undecodable", "the event is not a JSON object")
        event_type = data.get("event_type")
        spec = self._specs.get(event_type) if isinstance(event_type, str) else None
        if spec is None or (expect is not None and spec.event_type not in expect):
            raise DecodeError("unsupported_event", f"unexpected event_type {event_type!r}")
        version = data.get("schema_version")
        if not isinstance(version, int) or version < 1 or version > spec.version:
            raise DecodeError(
                "unsupported_event",
                f"{spec.event_type} schema_version {version!r} is not supported "
                f"(current is {spec.version})",
            )
        payload = data.get("payload")
        if version < spec.version and isinstance(payload, dict):
            data = {
                **data,
                "payload": spec.upcast(version, payload),
                "schema_version": spec.version,
            }
        try:
            return spec.envelope.model_validate(data)
        except ValidationError as exc:
            where = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
            code = "invalid_payload" if where <= {"payload"} else "invalid_envelope"
            raise DecodeError(code, _summarise(exc)) from exc


def _summarise(exc: ValidationError, limit: int = 5) -> str:
    parts = [
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:limit]
    ]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
