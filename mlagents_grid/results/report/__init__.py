"""grid-report: the runs gathered by grid point (points.py), written as tables (tables.py) and
plotted (plot.py) into the report's files (files.py)."""
