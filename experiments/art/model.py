"""ART classifiers: a recurrent layer (STPN or LSTM) read out linearly at the last time step."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from experiments.art.data import N_SYMBOLS, SEQ_LEN
from hwloop.crossbar import Crossbar
from hwloop.errors import HwloopError, ShapeError
from hwloop.stpn import STPN

Arch = Literal["stpn", "lstm"]
ARCHS: tuple[Arch, ...] = ("stpn", "lstm")
DEFAULT_HIDDEN: dict[Arch, int] = {"stpn": 11, "lstm": 9}  # as the STPN paper's ART comparison


class ARTModel(nn.Module):
    """``recurrent`` (STPN or batch-first LSTM, 37 inputs) then ``readout`` Linear(H, 37).

    ``model(xs)`` with xs (B, 9, 37) one-hot returns logits (B, 37) at the last step.
    """

    def __init__(
        self,
        arch: Arch = "stpn",
        hidden_size: int | None = None,
        *,
        lambda_range: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise HwloopError(f"unknown ART model {arch!r}; choose one of: {', '.join(ARCHS)}")
        if lambda_range is not None and arch != "stpn":
            raise HwloopError("a lambda range (hardware-aware model) applies only to an STPN")
        self.arch: Arch = arch
        self.hidden_size = DEFAULT_HIDDEN[arch] if hidden_size is None else hidden_size
        self.recurrent: STPN | nn.LSTM = (
            STPN(N_SYMBOLS, self.hidden_size, lambda_range=lambda_range)
            if arch == "stpn"
            else nn.LSTM(N_SYMBOLS, self.hidden_size, batch_first=True)
        )
        self.readout = nn.Linear(self.hidden_size, N_SYMBOLS)

    @property
    def label(self) -> str:
        """Short name such as ``STPN-11`` or ``LSTM-9``."""
        return f"{self.arch.upper()}-{self.hidden_size}"

    @property
    def stpn(self) -> STPN:
        """The STPN layer (to move it onto another crossbar backend); an error for an LSTM model."""
        if not isinstance(self.recurrent, STPN):
            raise HwloopError(f"{self.label} has no STPN layer: only STPN models run on a crossbar backend")
        return self.recurrent

    def set_backend(self, backend: str | Crossbar) -> None:
        """Move the STPN's synapses onto ``backend`` (a registered name or a Crossbar)."""
        self.stpn.set_backend(backend)

    def forward(self, xs: Tensor) -> Tensor:
        """xs (B, 9, 37) one-hot -> logits (B, 37) at the last time step."""
        if not isinstance(xs, Tensor) or xs.dim() != 3 or tuple(xs.shape[1:]) != (SEQ_LEN, N_SYMBOLS):
            got = tuple(xs.shape) if isinstance(xs, Tensor) else type(xs).__name__
            raise ShapeError(f"ART model expects xs of shape (B, {SEQ_LEN}, {N_SYMBOLS}) one-hot, got {got}")
        hs, _ = self.recurrent(xs)
        return self.readout(hs[:, -1])
