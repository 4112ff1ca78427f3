"""Queue: the folder on disk that holds the sweep, its runs' states and who owns each run."""
