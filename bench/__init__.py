"""Benchmarks: not part of the test suite; each prints its figures."""
