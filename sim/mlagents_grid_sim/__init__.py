"""`grid-sim-learn`: the real mlagents-learn on a small simulated environment, no Unity build.

A distribution of its own because it needs the ML-Agents stack (mlagents, mlagents_envs,
torch), which mlagents-grid itself does not: `make mlagents` installs it into .venv-mlagents.
"""

__version__ = "0.1.0"
