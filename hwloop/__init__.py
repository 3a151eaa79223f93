"""hwloop package."""
