"""CLI command groups; ``hwloop.cli`` composes them into one typer app."""
