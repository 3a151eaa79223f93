"""Volatile-memristor device models, the lowest package: every other one imports it, it imports none.

card.py       device cards (parameters with units, TOML/JSON)
memristor.py  the physics as pure functions
laws.py       decay laws phi(t) and the best per-step lambda of a non-exponential law
record.py     CalibrationRecord: what a calibrated array implements, per device
mapping.py    weights onto differential pairs
errors.py     HwloopError, the base of every user-facing error
"""
