"""Base classes for event payloads: frozen, with strict or tolerant reading."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class InternalPayload(BaseModel):
    """Payload exchanged between Consilium services: tolerant reader, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class IngressPayload(BaseModel):
    """Payload written by systems we do not control: unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)
