"""Kafka plumbing with the design's delivery semantics: inbox, outbox, relay, dead letters."""
