"""The engine's version: the one place it is written; every decision records it."""

ENGINE_VERSION = "consilium-engine/1.6.2"
