"""Assignment's own settings (CONSILIUM_ASSIGNMENT_*), beside the generic service ones."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AssignmentConfig(BaseSettings):
    """How often the sweeper looks for expired leases and overdue adjudications."""

    model_config = SettingsConfigDict(env_prefix="CONSILIUM_ASSIGNMENT_", extra="ignore")

    sweep_every_s: float = Field(1.0, gt=0, le=600)
    # Rows of each kind one pass handles at most (the next pass takes the rest).
    sweep_batch: int = Field(200, ge=1, le=10_000)
