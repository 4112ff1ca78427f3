"""A stand-in for ML-Agents: only mlagents.trainers.learn.main, for the runner tests."""
