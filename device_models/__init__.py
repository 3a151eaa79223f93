"""Volatile-memristor device models: ``card`` (parameters), ``memristor`` (physics), ``mapping`` (weights).

Imports nothing from ``calibration``, ``experiments``, ``drivers`` or the CLI; ``hwloop.errors`` only.
"""
