"""A consumed Kafka record, independent of the client library."""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

_DELIVERY_NAMESPACE = uuid.UUID("5f0c3c8e-8f5e-4c7d-9c54-3f3f9d0f6d11")


@dataclass(frozen=True)
class Delivery:
    """One record as consumed: where it came from and its exact bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    @classmethod
    def from_record(cls, record: Any) -> Delivery:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value if record.value is not None else b"",
            headers=tuple(record.headers or ()),
            timestamp_ms=record.timestamp,
        )

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.value).hexdigest()

    @property
    def position_id(self) -> uuid.UUID:
        """A stable id for records that carry no readable event id."""
        return uuid.uuid5(_DELIVERY_NAMESPACE, f"{self.topic}:{self.partition}:{self.offset}")

    def header_map(self) -> dict[str, str]:
        """Headers as text; values that are not UTF-8 are kept as `b64:<base64>`."""
        out: dict[str, str] = {}
        for name, value in self.headers:
            try:
                out[name] = value.decode()
            except UnicodeDecodeError:
                out[name] = "b64:" + base64.b64encode(value).decode()
        return out
