"""Crossbar backends; each registers itself by name in ``hwloop.crossbar``."""
