"""Trainer configs several test files plan."""

# The seed tool's GoalieStriker example: two behaviors sharing swept defaults.
GOALIE_STRIKER = """\
default_settings:
  trainer_type: poca
  hyperparameters:
    batch_size: 2048
    beta:
      opt_values: [0.001, 0.002, 0.003]
    epsilon:
      opt_values: [0.1, 0.2, 0.3]
  opt_stop:
    tag: Environment/Cumulative Reward
    step: 1000
    min: -0.5
behaviors:
  Goalie:
    trainer_type: poca
    hyperparameters:
      learning_rate: 0.0003
  Striker:
    trainer_type: poca
    hyperparameters:
      learning_rate: 0.0003
"""
