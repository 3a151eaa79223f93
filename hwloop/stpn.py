"""The Short-Term-Plasticity Neuron (Rodriguez, Guo & Moraitis, ICML 2022) as a recurrent layer.

Per time step, with presynaptic activity z = [x_t, h_{t-1}] (inputs first, then hidden units):

    G   = W + F_{t-1}                         efficacy, (H, K) per sample, K = I + H
    n_i = ||G_i,:||_2 + 1e-16                 row norm
    h_t = tanh((G z)_i / n_i + b_i)
    F_t = lambda * F_{t-1} / n + gamma * (h_t outer z)

W (``weight``), lambda (``weight_lambda``), gamma (``weight_gamma``) and b (``bias``) are trained by
backpropagation through time. With ``lambda_range=(lo, hi)`` (hardware-aware models) lambda is not
a free parameter: lambda = lo + (hi - lo) * sigmoid(``lambda_logit``) per synapse, so every trained
retention is one a device can realise (``hwloop.backends.aware.trainable_lambda_range``); the bounds
are a buffer (``lambda_bounds``) saved with the weights. Where G lives and how the arithmetic is done
is the crossbar backend's business (``hwloop.crossbar``); this module never looks at which backend it has.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from hwloop.crossbar import Crossbar, Synapses, make_backend
from hwloop.errors import ShapeError

State = tuple[Tensor, Tensor]  # (h (B, H), F (B, H, I + H))


class STPNRun(NamedTuple):
    """A sequence run: hidden outputs (B, T, H), final state, and per-step energy metric (B, T) or None."""

    hs: Tensor
    state: State
    energy: Tensor | None


class STPN(nn.Module):
    """A layer of ``hidden_size`` short-term-plasticity neurons fed by ``input_size`` inputs.

    ``backend`` is a registered crossbar name ("ideal", "emulated", "aihwkit", ...) or a
    ``Crossbar`` instance. Inputs are batch-first: ``layer(xs)`` with xs (B, T, I).
    ``lambda_range``: None (lambda a free parameter, as the paper) or (lo, hi) with 0 < lo < hi <= 1:
    lambda bounded per synapse by a sigmoid (module docstring).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        backend: str | Crossbar = "ideal",
        lambda_range: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ShapeError(
                f"STPN sizes must be positive, got input_size={input_size}, hidden_size={hidden_size}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        k = input_size + hidden_size
        self.weight = nn.Parameter(torch.empty(hidden_size, k))
        if lambda_range is None:
            self.weight_lambda = nn.Parameter(torch.empty(hidden_size, k))
        else:
            lo, hi = (float(v) for v in lambda_range)
            if not 0.0 < lo < hi <= 1.0:
                raise ShapeError(f"lambda_range must satisfy 0 < lo < hi <= 1, got ({lo}, {hi})")
            self.lambda_logit = nn.Parameter(torch.empty(hidden_size, k))
            self.register_buffer("lambda_bounds", torch.tensor([lo, hi]))
        self.weight_gamma = nn.Parameter(torch.empty(hidden_size, k))
        self.bias = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()
        self._crossbar: Crossbar = make_backend(backend) if isinstance(backend, str) else backend
        self._programmed_key: tuple[object, ...] | None = None

    def reset_parameters(self) -> None:
        """Initialise as the paper's code.

        lambda ~ U(0, 1) (bounded: U(lo, hi)), gamma ~ U(-1e-3/sqrt(H), 1e-3/sqrt(H)),
        W and b ~ U(-1/sqrt(H), 1/sqrt(H)).
        """
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)
            if self.bounded:  # lambda uniform over (lo, hi), as U(0, 1) is over the free range
                u = torch.rand_like(self.lambda_logit).clamp(1e-3, 1 - 1e-3)
                self.lambda_logit.copy_(torch.log(u / (1 - u)))
            else:
                self.weight_lambda.uniform_(0.0, 1.0)
            self.weight_gamma.uniform_(-1e-3 * bound, 1e-3 * bound)
        self._programmed_key = None

    # -- lambda -----------------------------------------------------------------------------------
    @property
    def bounded(self) -> bool:
        """True when lambda is bounded to ``lambda_range`` (a hardware-aware model)."""
        return "lambda_logit" in self._parameters

    @property
    def lambda_range(self) -> tuple[float, float] | None:
        """(lo, hi) of a bounded lambda, or None."""
        if not self.bounded:
            return None
        bounds = self._buffers["lambda_bounds"]
        assert bounds is not None
        lo, hi = bounds.tolist()
        return float(lo), float(hi)

    def __getattr__(self, name: str) -> Tensor | nn.Module:
        # weight_lambda of a bounded layer: computed from its logit (with gradient), read-only
        if name == "weight_lambda" and "lambda_logit" in self.__dict__.get("_parameters", {}):
            bounds, logit = self._buffers["lambda_bounds"], self._parameters["lambda_logit"]
            assert bounds is not None and logit is not None
            return bounds[0] + (bounds[1] - bounds[0]) * torch.sigmoid(logit)
        return super().__getattr__(name)

    def lambda_parameter(self) -> nn.Parameter:
        """The trainable tensor behind lambda: ``lambda_logit`` when bounded, else ``weight_lambda``."""
        return self._parameters["lambda_logit" if self.bounded else "weight_lambda"]  # type: ignore[return-value]

    def bounded_copy(self, lambda_range: tuple[float, float]) -> STPN:
        """A bounded-lambda layer (same backend) holding this layer's W, gamma and bias.

        Each lambda is clipped into ``lambda_range``, 1% of the range inside either end (where the
        sigmoid still has gradient), and stored as the logit that gives it.
        """
        out = STPN(self.input_size, self.hidden_size, backend=self._crossbar, lambda_range=lambda_range)
        lo, hi = out.lambda_range  # type: ignore[misc]  # bounded by construction
        with torch.no_grad():
            out.to(self.weight.dtype)
            out.weight.copy_(self.weight)
            out.weight_gamma.copy_(self.weight_gamma)
            out.bias.copy_(self.bias)
            u = ((self.weight_lambda.detach() - lo) / (hi - lo)).clamp(0.01, 0.99)
            out.lambda_logit.copy_(torch.log(u / (1 - u)))
        return out

    # -- backend ---------------------------------------------------------------------------------
    @property
    def crossbar(self) -> Crossbar:
        """The backend holding this layer's synapses."""
        return self._crossbar

    def set_backend(self, backend: str | Crossbar) -> None:
        """Move the synapses onto another backend (programs it on next use)."""
        self._crossbar = make_backend(backend) if isinstance(backend, str) else backend
        self._programmed_key = None

    def synapses(self) -> Synapses:
        """The (weight, lambda, gamma) triple, each (H, I + H)."""
        return Synapses(self.weight, self.weight_lambda, self.weight_gamma)

    def _ensure_programmed(self) -> None:
        # Re-program only when a parameter changed (optimizer step, load_state_dict, .to()):
        # on a physical array programming is slow and draws fresh programming noise.
        params = (self.weight, self.lambda_parameter(), self.weight_gamma)
        key = (
            id(self._crossbar),
            torch.is_grad_enabled(),  # a program under no_grad holds a lambda without gradient
            *((id(p), p.data_ptr(), p._version) for p in params),
        )
        if key != self._programmed_key:
            self._crossbar.program(self.synapses())
            self._programmed_key = key

    # -- state -----------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> State:
        """h = 0 (B, H) and F at rest (B, H, I + H)."""
        self._ensure_programmed()
        h = self.weight.new_zeros(batch_size, self.hidden_size)
        return h, self._crossbar.initial_state(batch_size)

    def _check_step_inputs(self, x: Tensor, state: State) -> None:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.input_size:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(f"STPN step expects x of shape (B, {self.input_size}), got {got}")
        h, F = state
        b, k = x.shape[0], self.input_size + self.hidden_size
        if tuple(h.shape) != (b, self.hidden_size) or tuple(F.shape) != (b, self.hidden_size, k):
            raise ShapeError(
                f"STPN state must be h ({b}, {self.hidden_size}) and F ({b}, {self.hidden_size}, {k}), "
                f"got h {tuple(h.shape)} and F {tuple(F.shape)}"
            )

    # -- dynamics --------------------------------------------------------------------------------
    def _step(self, x: Tensor, state: State, energy: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        h_prev, F = state
        z = torch.cat([x, h_prev], dim=1)
        return self._crossbar.step(F, z, self.bias, energy=energy)

    def step(self, x: Tensor, state: State | None = None) -> State:
        """One time step: x (B, I), state (h, F) -> new (h, F). ``None`` starts from rest."""
        if state is None and self.bounded and torch.is_grad_enabled():
            self._programmed_key = None  # a new sequence under training: lambda's graph afresh
        state = self.initial_state(x.shape[0]) if state is None else state
        self._check_step_inputs(x, state)
        self._ensure_programmed()
        h, F, _ = self._step(x, state, energy=False)
        return h, F

    def run(self, xs: Tensor, state: State | None = None, *, energy: bool = False) -> STPNRun:
        """Run a sequence xs (B, T, I); optionally also the paper's energy metric per step (B, T)."""
        if not isinstance(xs, Tensor) or xs.dim() != 3 or xs.shape[2] != self.input_size:
            got = tuple(xs.shape) if isinstance(xs, Tensor) else type(xs).__name__
            raise ShapeError(f"STPN expects xs of shape (B, T, {self.input_size}) batch-first, got {got}")
        if self.bounded and torch.is_grad_enabled():
            self._programmed_key = None  # lambda = f(logit) is a graph: build it afresh for each run
        state = self.initial_state(xs.shape[0]) if state is None else state
        self._check_step_inputs(xs[:, 0], state)
        self._ensure_programmed()
        hs, es = [], []
        for t in range(xs.shape[1]):
            h, F, e = self._step(xs[:, t], state, energy)
            state = (h, F)
            hs.append(h)
            if e is not None:
                es.append(e)
        return STPNRun(torch.stack(hs, dim=1), state, torch.stack(es, dim=1) if energy else None)

    def forward(self, xs: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """xs (B, T, I) -> hs (B, T, H) and the final state (h, F)."""
        result = self.run(xs, state)
        return result.hs, result.state
