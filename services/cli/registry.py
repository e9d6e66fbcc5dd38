"""The services' definitions by name (imported lazily by the CLI)."""

from __future__ import annotations

import importlib

from shared.runtime import ServiceDefinition
from shared.settings import SERVICES


def definition(name: str) -> ServiceDefinition:
    if name not in SERVICES:
        raise KeyError(f"unknown service {name!r}; expected one of {', '.join(SERVICES)}")
    module = importlib.import_module(f"services.{name}.app")
    found: ServiceDefinition = module.DEFINITION
    return found
