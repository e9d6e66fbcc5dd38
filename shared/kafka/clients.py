"""Connection settings for every aiokafka client the project builds (admin, producers,
consumers outside faststream), so SASL and TLS apply to all of them, not only to the
services' broker."""

from __future__ import annotations

import ssl
from typing import Any

from shared.settings import StackSettings


def client_options(stack: StackSettings) -> dict[str, Any]:
    """aiokafka keyword arguments: bootstrap servers plus the configured security."""
    options: dict[str, Any] = {
        "bootstrap_servers": stack.kafka_bootstrap,
        "security_protocol": stack.kafka_security_protocol,
    }
    if "SSL" in stack.kafka_security_protocol:
        options["ssl_context"] = ssl.create_default_context(cafile=stack.kafka_ssl_cafile)
    if stack.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = stack.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = stack.kafka_sasl_username
        options["sasl_plain_password"] = (
            stack.kafka_sasl_password.get_secret_value() if stack.kafka_sasl_password else None
        )
    return options
