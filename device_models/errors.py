"""The base of every user-facing error: the CLI prints a ``HwloopError`` as one line, never a stack trace.

It lives here, in the lowest package, so that ``device_models``, ``drivers``, ``calibration``,
``experiments`` and ``hwloop`` all import it one way (``hwloop.errors`` re-exports it).
"""


class HwloopError(Exception):
    """A mistake in what the user asked for or gave us (bad input, wrong file, unknown name)."""
