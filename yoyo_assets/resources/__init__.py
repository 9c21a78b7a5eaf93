"""Dagster resources: the inference server and the graph store."""
