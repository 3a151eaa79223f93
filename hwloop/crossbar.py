"""The crossbar protocol: the one interface between the STPN and whatever holds its synapses.

An STPN layer with hidden size H and presynaptic size K = I + H keeps, per sample b, an efficacy
matrix G = W + F (H, K): W the long-term weights, F the short-term (plastic, decaying) state.
Every backend (ideal digital arithmetic, emulated memristive devices, aihwkit analog tiles, a lab
array behind instruments) realises the same five operations:

    program(synapses)             write W and the per-synapse retention/plasticity (lambda, gamma)
    initial_state(B)              F at rest, (B, H, K), in weight units
    read(F, z)                    y = (G z) / n and the row norms n = ||G_i,:||_2 + 1e-16, (B, H) each
    update(F, n, h, z)            one time step dt: retention lambda * F / n, then the Hebbian write
                                  gamma * (h outer z); returns the next F
    step(F, z, bias)              one whole time step: read, the periphery's neurons
                                  h = tanh(y + bias), update; returns (h, F_t, energy). Backends
                                  compose it from read and update (``read_then_update``) unless
                                  they can do better (the ideal one fuses it into one pass)
    energy()                      physical energy counters in joules since the last reset

F is always expressed in weight units so the STPN's state means the same on every backend; a
backend with physical state (device conductances, a per-row digital scale) keeps the mapping.
Backends are registered by name (``register_backend``) and built with ``make_backend(name)``;
the STPN never branches on which backend it has.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

from hwloop.errors import BackendUnavailable

NORM_EPS = 1e-16  # added to each row norm, as in the STPN paper's code


class Synapses(NamedTuple):
    """The trainable synaptic parameters of one STPN layer, each (H, K) with K = I + H."""

    weight: Tensor
    lam: Tensor
    gamma: Tensor


class Readout(NamedTuple):
    """What one read of the array returns, per sample.

    y: (B, H) normalised pre-activations (G z)_i / n_i.
    n: (B, H) row norms ||G_i,:||_2 + 1e-16.
    energy: (B,) the paper's synaptic energy metric sum_ij |G_ij / n_i| z_j^2 (z read as volts,
        G as siemens, so units are W over one unit of read time), or None if not requested.
    """

    y: Tensor
    n: Tensor
    energy: Tensor | None


class StepResult(NamedTuple):
    """One time step: hidden output h (B, H), next state F_t (B, H, K), energy metric (B,) or None."""

    h: Tensor
    F: Tensor
    energy: Tensor | None


@runtime_checkable
class Crossbar(Protocol):
    """A batch of arrays (one per sample) holding an STPN layer's synapses. See the module docstring."""

    name: str

    def program(self, synapses: Synapses) -> None:
        """Write the long-term weights and per-synapse lambda, gamma; called when parameters change."""
        ...

    def initial_state(self, batch_size: int) -> Tensor:
        """Short-term state at rest, (B, H, K), on the parameters' device and dtype."""
        ...

    def read(self, F: Tensor, z: Tensor, *, energy: bool = False) -> Readout:
        """Matrix-vector product of G = W + F with presynaptic activity z (B, K), normalised by row."""
        ...

    def update(self, F: Tensor, n: Tensor, h: Tensor, z: Tensor) -> Tensor:
        """Advance one time step: decay (retention) then Hebbian write; returns F_t (B, H, K)."""
        ...

    def step(self, F: Tensor, z: Tensor, bias: Tensor, *, energy: bool = False) -> StepResult:
        """One time step of the layer on this array: read, h = tanh(y + bias), update."""
        ...

    def energy(self) -> dict[str, float]:
        """Physical energy counters in joules (read, program, bias); empty for digital backends."""
        ...


def read_then_update(
    crossbar: Crossbar, F: Tensor, z: Tensor, bias: Tensor, *, energy: bool = False
) -> StepResult:
    """One STPN time step composed from the protocol's ``read`` and ``update``.

    h_t = tanh((G z)_i / n_i + b_i), then F_t from ``update``; the default ``step`` of every backend.
    """
    out = crossbar.read(F, z, energy=energy)
    h = torch.tanh(out.y + bias)
    return StepResult(h, crossbar.update(F, out.n, h, z), out.energy)


BackendFactory = Callable[..., Crossbar]

# name -> "module:attribute"; imported only when asked for, so an optional dependency
# (aihwkit) never loads unless its backend is selected.
_REGISTRY: dict[str, str | BackendFactory] = {}


def register_backend(name: str, factory: str | BackendFactory) -> None:
    """Register a backend under ``name``: a factory callable or a lazy "module:attribute" path."""
    _REGISTRY[name] = factory


def available_backends() -> list[str]:
    """Names of all registered backends."""
    return sorted(_REGISTRY)


def _factory(name: str) -> BackendFactory:
    """The factory registered as ``name``, importing its module on first use."""
    if name not in _REGISTRY:
        raise BackendUnavailable(f"unknown backend {name!r}; available: {', '.join(available_backends())}")
    factory = _REGISTRY[name]
    if isinstance(factory, str):
        module_name, attr = factory.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BackendUnavailable(f"backend {name!r} cannot load: {exc}") from exc
        factory = getattr(module, attr)
    return factory


def backend_parameters(name: str) -> list[str]:
    """Names of the keyword options backend ``name`` takes (e.g. ``["card", "seed", "dt_s", ...]``)."""
    return list(inspect.signature(_factory(name)).parameters)


def make_backend(name: str, **options: Any) -> Crossbar:
    """Build the backend registered as ``name`` with backend-specific keyword options.

    Options a backend does not take are refused with one clear error (never silently ignored).
    """
    factory = _factory(name)
    try:
        inspect.signature(factory).bind(**options)
    except TypeError:
        accepted = ", ".join(inspect.signature(factory).parameters) or "no options"
        given = ", ".join(sorted(options))
        raise BackendUnavailable(
            f"backend {name!r} does not take option(s) {given}; it takes: {accepted}"
        ) from None
    return factory(**options)


register_backend("ideal", "hwloop.backends.ideal:IdealCrossbar")
register_backend("emulated", "hwloop.backends.emulated:EmulatedCrossbar")
register_backend("ideal-native", "hwloop.backends.native:IdealNativeCrossbar")
register_backend("aihwkit", "hwloop.backends.aihwkit_tiles:AihwkitCrossbar")
register_backend("lab", "hwloop.backends.lab:LabCrossbar")
register_backend("aware", "hwloop.backends.aware:AwareCrossbar")
