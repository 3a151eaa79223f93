"""device_models package."""
