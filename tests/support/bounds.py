"""Generous bounds for the tests' waits, each named for what it waits for.

Every bound is sized for a machine 3-4 times slower than a quiet 2-core one (other suites on
the same machine, a busy CI neighbour, `make test-loaded`'s two busy loops): a passing test
never waits that long, so a generous bound costs nothing but the time it takes to report a
real failure. The figure in brackets is the longest such wait seen in `make test-loaded` runs
on a 2-core machine that other suites were using too.

Where a test needs a state (all three SLURM tasks training, a run caught at its rung), the
fake trainer is told to hold it there (tests/support/fake_trainer.py: hold_at, gate_at) rather than
the test waiting longer for a race to come out right.

pytest-timeout stops any test after 120 s (pyproject.toml): a test that takes more than 30 s
with both cores busy carries its own, larger, `@pytest.mark.timeout`.
"""

REAP_S = 30  # a process killed with SIGKILL is gone and reaped (1.5 s)
STATE_S = 60  # a sweep reaches a state: a run starts, trains, saves, pauses, stops (5 s; 18 s
# where the run waited for comes after one that trains for 15 s)
EXIT_S = 60  # a process with nothing left to do exits: a worker once its runs are stopped,
# a monitor once every run is final, a command that refuses its arguments (2 s)
SWEEP_S = 120  # workers drain one of the tests' small sweeps of fake-trainer runs (17 s)
HOLD_S = 60  # the fake trainer holds a run at a step until the monitor pauses it (1.3 s)
TENSORBOARD_S = 90  # a TensorBoard server started on 127.0.0.1 answers (9 s)
ANSWER_S = 30  # a server on 127.0.0.1 answers one request (milliseconds)
REPEATED_TEST_S = 300  # the timeout of a test that repeats a scenario 20 to 50 times (55 s)
