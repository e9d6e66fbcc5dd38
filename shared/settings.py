"""Settings from the environment (pydantic-settings): shared stack settings plus one
prefix per service, e.g. CONSILIUM_SUBMISSION_DATABASE_URL."""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("assignment", "submission", "consensus", "export")
DEFAULT_HTTP_PORTS = {"assignment": 8081, "submission": 8082, "consensus": 8083, "export": 8084}


class StackSettings(BaseSettings):
    """Where the shared infrastructure is; read from CONSILIUM_* variables."""

    model_config = SettingsConfigDict(env_prefix="CONSILIUM_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    # A prefix on every topic name, so test runs on a shared broker do not see each other.
    topic_prefix: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str | None = None


class ServiceSettings(BaseSettings):
    """One service's own settings; the prefix is CONSILIUM_<SERVICE>_."""

    model_config = SettingsConfigDict(extra="ignore")

    name: str = ""
    database_url: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 0
    consumer_group: str = ""
    # Delivery tuning: bounded retries with exponential backoff before dead-lettering.
    max_attempts: int = Field(3, ge=1, le=20)
    retry_backoff_s: float = Field(0.2, ge=0.0, le=60.0)
    batch_max_records: int = Field(500, ge=1, le=10_000)
    batch_timeout_ms: int = Field(50, ge=1, le=10_000)
    # Consumer-group liveness: a member silent this long is evicted and its partitions move.
    session_timeout_ms: int = Field(10_000, ge=1000, le=300_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100, le=100_000)
    max_event_bytes: int = Field(256 * 1024, ge=1024)
    outbox_batch: int = Field(500, ge=1, le=10_000)
    outbox_poll_s: float = Field(0.5, gt=0.0)
    # Publish the outbox in Kafka transactions with checkpoints (topics without inboxes).
    exactly_once_relay: bool = False
    # Export only: also publish each consensus version as FHIR on consensus.fhir.v1.
    publish_fhir: bool = False
    # Consensus only: decide every reached item again under the current reliability this
    # often, publishing those whose label flips (0 = only on `consilium reestimate`).
    reestimate_interval_s: float = Field(0.0, ge=0.0)
    db_pool_max: int = Field(8, ge=1, le=100)


def service_settings(name: str, **overrides: Any) -> ServiceSettings:
    """One service's settings: explicit overrides, then CONSILIUM_<SERVICE>_* variables,
    then local-stack defaults."""
    return _settings_class(name)(**overrides)


@cache
def _settings_class(name: str) -> type[ServiceSettings]:
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; expected one of {', '.join(SERVICES)}")
    defaults = {
        "name": name,
        # Loopback needs no TLS, which would double every query's round trip; set a DSN
        # with sslmode=verify-full for any database that is not on this machine.
        "database_url": (
            f"postgresql://consilium_{name}:consilium_{name}@127.0.0.1:5432/consilium"
            "?sslmode=disable"
        ),
        "http_port": DEFAULT_HTTP_PORTS[name],
        "consumer_group": f"consilium-{name}",
        # Only export feeds a topic that outside consumers read without an inbox.
        "exactly_once_relay": name == "export",
    }
    namespace: dict[str, object] = {
        "__annotations__": {field: type(value) for field, value in defaults.items()},
        **defaults,
        "model_config": SettingsConfigDict(env_prefix=f"CONSILIUM_{name.upper()}_", extra="ignore"),
    }
    return type(f"{name.title()}Settings", (ServiceSettings,), namespace)
