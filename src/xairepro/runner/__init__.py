"""Reproduction runner: grid of cells, config-hash cache, resume, local and Ray executors."""
