"""User-facing errors: the CLI prints these as one line, never as a stack trace."""

from device_models.errors import HwloopError

__all__ = ["BackendUnavailable", "CheckpointError", "HwloopError", "ShapeError"]


class ShapeError(HwloopError, ValueError):
    """A tensor of the wrong shape was passed to a model or backend."""


class CheckpointError(HwloopError):
    """A checkpoint file is missing, corrupted, or of another architecture."""


class BackendUnavailable(HwloopError):
    """A crossbar backend was requested that is unknown or whose dependencies are not installed."""
