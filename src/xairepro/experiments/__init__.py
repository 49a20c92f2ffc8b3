"""Experiments: one module per table or figure of the two studies."""
