"""Plan: a trainer config with opt_values becomes the runs; nothing here touches the queue.

document.py reads the config into a `grid.Plan`, with conditions.py (opt_stop) and rungs.py
(opt_rungs); seeds.py trains each grid point K times; sweep.py checks the plan against
grid-plan's flags (learn_args.py, mlagents_checks.py) into the sweep record; diff.py compares
a changed config's plan with the sweep's for --extend.
"""
