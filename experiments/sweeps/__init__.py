"""Variability-tolerance sweeps: a TOML spec names a task, a backend and a grid over device-card fields
or backend options; every (grid point, chip seed, repeat) is evaluated once, on Ray or a process pool,
and stored as one row of a Parquet dataset; the report plots the metric against each parameter and
finds the tolerance threshold where it drops by more than a margin from its best.

    spec.py     the sweep spec (pydantic) and its expansion into points
    point.py    evaluating one point (runs in a worker)
    store.py    the Parquet results dataset: append as points finish, read back, skip finished points
    runner.py   execution on Ray (local or ``--address``) or on a local process pool, retries, progress
    report.py   figure (metric vs parameters, heat map) and tolerance thresholds with bootstrap CIs
"""
