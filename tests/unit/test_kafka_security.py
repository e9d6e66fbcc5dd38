"""Kafka credentials reach every client the project builds."""

from __future__ import annotations

import ssl

from faststream.security import SASLScram512

from shared.kafka.broker import _security
from shared.kafka.clients import client_options
from shared.settings import StackSettings


def test_plaintext_needs_no_credentials() -> None:
    options = client_options(StackSettings())
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert _security(StackSettings()) is None


def test_sasl_scram_over_tls_configures_every_aiokafka_client() -> None:
    stack = StackSettings(
        kafka_bootstrap="kafka.internal:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="consilium-export",
        kafka_sasl_password="s3cret",
    )
    options = client_options(stack)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "consilium-export",
        "s3cret",
    )
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_the_services_broker_gets_the_same_mechanism() -> None:
    stack = StackSettings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    assert isinstance(_security(stack), SASLScram512)
