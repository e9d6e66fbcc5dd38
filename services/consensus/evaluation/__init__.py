"""Evaluation harness: replay real multi-rater datasets through the engine, next to crowd-kit.

Heavy dependencies (pandas, crowd-kit, matplotlib) are imported inside functions, so
importing this package costs nothing and the engine never depends on them.
"""
