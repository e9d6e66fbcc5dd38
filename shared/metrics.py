"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    events_in: Counter
    events_out: Counter
    dead_lettered: Counter
    batch_seconds: Histogram
    handler_seconds: Histogram
    outbox_backlog: Gauge
    consumer_lag: Gauge
    time_to_consensus: Histogram
    assignments_issued: Counter
    lease_expiries: Counter
    assignment_declines: Counter
    adjudication_waiting: Gauge
    adjudication_oldest_seconds: Gauge
    adjudication_sla_breaches: Counter
    reestimated_items: Counter


def _build() -> Metrics:
    registry = CollectorRegistry(auto_describe=True)
    return Metrics(
        registry=registry,
        events_in=Counter(
            "consilium_events_in_total",
            "Consumed events by outcome (processed, duplicate, rejected, dead_lettered).",
            ["consumer", "topic", "outcome"],
            registry=registry,
        ),
        events_out=Counter(
            "consilium_events_out_total",
            "Events published by the outbox relay.",
            ["service", "topic"],
            registry=registry,
        ),
        dead_lettered=Counter(
            "consilium_dead_lettered_total",
            "Records sent to the dead-letter topic after their retries.",
            ["consumer", "topic"],
            registry=registry,
        ),
        batch_seconds=Histogram(
            "consilium_batch_seconds",
            "Time to handle one consumed batch in its transaction.",
            ["consumer"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        ),
        handler_seconds=Histogram(
            "consilium_handler_seconds",
            "Time one handler took for one event (database work included, commit excluded).",
            ["consumer", "event_type"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        ),
        outbox_backlog=Gauge(
            "consilium_outbox_backlog",
            "Outbox rows not yet published.",
            ["service"],
            registry=registry,
        ),
        time_to_consensus=Histogram(
            "consilium_time_to_consensus_seconds",
            "From an item's first accepted label to its first published consensus.",
            buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600),
            registry=registry,
        ),
        consumer_lag=Gauge(
            "consilium_consumer_lag",
            "Records between a partition's end and this consumer's position.",
            ["consumer", "topic", "partition"],
            registry=registry,
        ),
        assignments_issued=Counter(
            "consilium_assignments_issued_total",
            "Assignments issued, by kind (label or adjudication).",
            ["kind"],
            registry=registry,
        ),
        lease_expiries=Counter(
            "consilium_lease_expiries_total",
            "Assignments whose lease ran out before their label arrived.",
            ["kind"],
            registry=registry,
        ),
        assignment_declines=Counter(
            "consilium_assignment_declines_total",
            "Assignments declined by their annotator.",
            ["kind"],
            registry=registry,
        ),
        adjudication_waiting=Gauge(
            "consilium_adjudication_waiting",
            "Contested items waiting for an adjudicator, per queue and tier.",
            ["task", "specialty", "tier"],
            registry=registry,
        ),
        adjudication_oldest_seconds=Gauge(
            "consilium_adjudication_oldest_seconds",
            "Age of the oldest contested item waiting in a queue at a tier.",
            ["task", "specialty", "tier"],
            registry=registry,
        ),
        adjudication_sla_breaches=Counter(
            "consilium_adjudication_sla_breaches_total",
            "Contested items overdue at the last adjudication tier.",
            ["task", "specialty"],
            registry=registry,
        ),
        reestimated_items=Counter(
            "consilium_reestimated_items_total",
            "Reached items the periodic re-estimate checked, and those it republished.",
            ["result"],
            registry=registry,
        ),
    )


METRICS = _build()
