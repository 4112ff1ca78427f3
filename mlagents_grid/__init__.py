"""Hyperparameter grid searches for Unity ML-Agents, run as a file-driven job queue."""

__version__ = "0.1.0"
