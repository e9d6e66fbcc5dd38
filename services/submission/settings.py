"""Submission's own settings (CONSILIUM_SUBMISSION_*), beside the generic service ones."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development only: set CONSILIUM_SUBMISSION_CLIENT_KEY_MASTER (64+ hex characters or any
# long random string) in every real deployment, in the service's and the CLI's environment.
DEV_MASTER_KEY = "consilium-development-master-key-do-not-use-in-production"


class SubmissionConfig(BaseSettings):
    """Signing, replay window and the wait for assignments."""

    model_config = SettingsConfigDict(env_prefix="CONSILIUM_SUBMISSION_", extra="ignore")

    # Client secrets are derived from this key (shared/signing.py: derive_secret).
    client_key_master: SecretStr = SecretStr(DEV_MASTER_KEY)
    # A signature is valid within this many seconds of the broker's time of the record.
    signature_window_s: float = Field(300.0, gt=0, le=24 * 3600)
    # How long a label may wait for its item's registration or the assignment it answers
    # (they travel on other topics and can be overtaken) before `unknown_item` or
    # `no_assignment`.
    assignment_wait_s: float = Field(60.0, ge=0, le=24 * 3600)
    # How often parked labels are swept.
    sweep_every_s: float = Field(2.0, gt=0, le=600)

    @property
    def master(self) -> bytes:
        return self.client_key_master.get_secret_value().encode()

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.signature_window_s)

    @property
    def assignment_wait(self) -> timedelta:
        return timedelta(seconds=self.assignment_wait_s)
