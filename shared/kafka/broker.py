"""The faststream Kafka broker every service uses: idempotent producer, optional SASL/TLS."""

from __future__ import annotations

import logging
import ssl

from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from shared.settings import StackSettings


def make_broker(
    stack: StackSettings, client_id: str, graceful_timeout: float = 15.0
) -> KafkaBroker:
    """A broker whose producer is idempotent (acks=all) and whose per-message logs are DEBUG."""
    return KafkaBroker(
        stack.kafka_bootstrap,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        security=_security(stack),
        graceful_timeout=graceful_timeout,
        log_level=logging.DEBUG,
        # Through the stdlib logger, so faststream's lines are JSON like every other.
        logger=logging.getLogger("consilium.faststream"),
        # Topics come from `consilium topics --ensure` with their partitions and configs.
        allow_auto_create_topics=False,
    )


def _security(stack: StackSettings) -> BaseSecurity | None:
    protocol = stack.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = (
        ssl.create_default_context(cafile=stack.kafka_ssl_cafile) if "SSL" in protocol else None
    )
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    username = stack.kafka_sasl_username or ""
    password = stack.kafka_sasl_password.get_secret_value() if stack.kafka_sasl_password else ""
    use_ssl = protocol == "SASL_SSL"
    mechanisms: dict[str | None, type[SASLPlaintext] | type[SASLScram256] | type[SASLScram512]] = {
        "PLAIN": SASLPlaintext,
        None: SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }
    return mechanisms[stack.kafka_sasl_mechanism](
        username, password, ssl_context=context, use_ssl=use_ssl
    )
