"""OpenTelemetry: tracer setup, and W3C trace context carried in Kafka headers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

_configured = False


def configure_tracing(
    service: str, exporter: str = "none", endpoint: str | None = None
) -> TracerProvider | None:
    """Install a tracer provider once per process; `exporter` is none, console or otlp."""
    if _configured or exporter == "none":
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": f"consilium-{service}"}))
    span_exporter: SpanExporter
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    else:
        span_exporter = ConsoleSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    install(provider)
    return provider


def install(provider: TracerProvider) -> None:
    """Make `provider` the process's tracer provider and trace database calls with it."""
    global _configured
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _configured = True


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_headers() -> dict[str, str]:
    """The current trace context as Kafka header values (traceparent, tracestate)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def headers_context(headers: Mapping[str, str]) -> otel_context.Context:
    """The trace context stored with an outbox row (its headers, as text)."""
    return propagate.extract(dict(headers))


def extract_context(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, str],
) -> otel_context.Context:
    """A context whose parent is the span recorded in a message's headers."""
    if isinstance(headers, Mapping):
        carrier = dict(headers)
    else:
        carrier = {k: v.decode("latin-1") for k, v in headers if k in ("traceparent", "tracestate")}
    return propagate.extract(carrier)
