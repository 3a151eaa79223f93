"""laws.py's lambda <-> tau conversions (numpy and torch) against closed forms and their derivative."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from device_models.laws import exp_retention, exp_tau_s, log_step_time, retention_of_log_step_time


def test_tau_of_a_retention_is_the_time_constant_that_retains_it_by_hand() -> None:
    # one e-fold per step: lambda = 1/e at tau = dt
    assert float(exp_tau_s(np.array(math.exp(-1.0)), 0.1)) == pytest.approx(0.1, rel=1e-15)
    lam = np.array([0.05, 0.5, 0.9, 0.999])
    tau = exp_tau_s(lam, 0.25)
    np.testing.assert_allclose(np.exp(-0.25 / tau), lam, rtol=1e-13)
    np.testing.assert_allclose(exp_retention(0.25, tau), lam, rtol=1e-13)
    # log-time: ln(dt / tau) and back
    np.testing.assert_allclose(log_step_time(lam), np.log(0.25 / tau), rtol=1e-12)
    np.testing.assert_allclose(retention_of_log_step_time(log_step_time(lam)), lam, rtol=1e-13)


def test_the_torch_path_is_differentiable_with_the_analytic_derivative() -> None:
    lam = torch.tensor([0.2, 0.6, 0.95], dtype=torch.float64, requires_grad=True)
    dt = 0.1
    tau = exp_tau_s(lam, dt)
    assert isinstance(tau, torch.Tensor)
    tau.sum().backward()
    assert lam.grad is not None
    # d/dlam (-dt / ln lam) = dt / (lam ln(lam)^2)
    expected = dt / (lam.detach() * torch.log(lam.detach()) ** 2)
    torch.testing.assert_close(lam.grad, expected, rtol=1e-12, atol=0)
    back = exp_retention(dt, tau)
    torch.testing.assert_close(back, lam.detach(), rtol=1e-13, atol=0)
