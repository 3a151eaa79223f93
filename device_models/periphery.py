"""The analog matrix-vector periphery: input DACs, output noise and output ADCs of a tile.

A crossbar read y = W x does not reach the digital side exactly. The periphery normalises each
input vector by its largest magnitude (noise management) and drives the rows through a DAC; the
column currents pick up additive noise and are digitised by an ADC. In the tile's normalised units
(weights divided by w_max, inputs by the sample's max |x|):

    y_norm = ADC( (W / w_max) DAC(x / x_max) + out_noise * N(0, 1) ),    y = y_norm * w_max * x_max

with DAC(u) = round(u / inp_step) inp_step on [-inp_bound, inp_bound] and ADC likewise with
out_step on [-out_bound, out_bound]. ``per_output_scale`` (default True): each output has its own
w_max, the largest |W| of its row, and its own digital gain, so every output uses the full
conductance range (aihwkit's ``weight_scaling_columnwise``; chips calibrate a gain per ADC column).
False: one w_max per tile.

``Periphery()`` holds IBM aihwkit 1.2.0's inference defaults (``InferenceRPUConfig().forward``:
7-bit DAC, 9-bit ADC, output noise 0.06, bounds 1 and 12) with a gain per output; the aihwkit
backend builds its tiles from it and the hardware-aware training backend draws the same noise, so
both see one periphery. ``tests/test_periphery.py`` holds ``periphery_read`` to aihwkit's
own forward pass.

Output bound management (aihwkit re-reads a saturated output with a smaller input scale) is
modelled as no clipping: the ADC's range is then never the limit.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor


class Periphery(BaseModel):
    """DAC, ADC and output noise of an analog tile, in the tile's normalised units (see module)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inp_bits: int = Field(default=7, ge=2, le=24, description="input DAC resolution, bits (signed)")
    out_bits: int = Field(default=9, ge=2, le=24, description="output ADC resolution, bits (signed)")
    out_noise: float = Field(
        default=0.06, ge=0.0, description="std of the additive output noise, normalised units"
    )
    inp_bound: float = Field(default=1.0, gt=0.0, description="DAC range +-inp_bound, normalised units")
    out_bound: float = Field(default=12.0, gt=0.0, description="ADC range +-out_bound, normalised units")
    per_output_scale: bool = Field(default=True, description="one w_max per output (True) or per tile")

    @property
    def inp_res(self) -> float:
        """DAC step as a fraction of its full range (aihwkit's ``inp_res``): 1 / (2^bits - 2)."""
        return 1.0 / (2**self.inp_bits - 2)

    @property
    def out_res(self) -> float:
        """ADC step as a fraction of its full range (aihwkit's ``out_res``): 1 / (2^bits - 2)."""
        return 1.0 / (2**self.out_bits - 2)

    @property
    def inp_step(self) -> float:
        """DAC step in normalised input units: 2 inp_bound inp_res."""
        return 2.0 * self.inp_bound * self.inp_res

    @property
    def out_step(self) -> float:
        """ADC step in normalised output units: 2 out_bound out_res."""
        return 2.0 * self.out_bound * self.out_res


def _round_ste(u: Tensor, step: float) -> Tensor:
    """u rounded to multiples of ``step``, with the identity as its gradient (straight through)."""
    return u + (torch.round(u / step) * step - u).detach()


def periphery_read(weight: Tensor, x: Tensor, periphery: Periphery, generator: torch.Generator) -> Tensor:
    """W x (B, H) as the periphery delivers it for weights ``weight`` (H, K) and inputs ``x`` (B, K),
    both in weight units: DAC on the normalised input, output noise, ADC (module docstring).

    Differentiable: the quantisers pass gradients straight through, the scales w_max and x_max are
    detached (they are the periphery's settings, not functions the network learns through).
    """
    w_abs = weight.detach().abs()
    if periphery.per_output_scale:
        w_max = w_abs.amax(dim=1, keepdim=True)  # (H, 1): one gain per output
    else:
        w_max = w_abs.max().expand(len(w_abs), 1)  # (H, 1): one gain for the tile
    w_max = w_max.clamp(min=1e-30)
    x_max = x.detach().abs().amax(dim=1, keepdim=True).clamp(min=1e-30)  # (B, 1)
    u = _round_ste(x / x_max, periphery.inp_step).clamp(-periphery.inp_bound, periphery.inp_bound)
    y = u @ (weight / w_max).T
    if periphery.out_noise > 0:
        y = y + periphery.out_noise * torch.randn(y.shape, generator=generator, dtype=y.dtype)
    y = _round_ste(y, periphery.out_step)
    return y * w_max.T * x_max
