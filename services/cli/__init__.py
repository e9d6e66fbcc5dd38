"""The `consilium` command: the one entry point for operators."""

from services.cli.main import app

__all__ = ["app"]
