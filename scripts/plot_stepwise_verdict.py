"""docs/img/stepwise_verdict.png: synthetic diffusive-filament relaxations (``device_models.stepwise``)
on the failed-fits page of ``calibrate report``: data, the best smooth law, residuals, the jumps found.

Run: ``.venv/bin/python scripts/plot_stepwise_verdict.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.report import failed_fits_page
from device_models.stepwise import Ruptures, stepwise_conductance

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "stepwise_verdict.png"


def main() -> None:
    rng = np.random.default_rng(3)
    t = np.linspace(0.01, 2.0, 200)
    rup = Ruptures(
        t_s=np.array([[0.18, 0.42, 0.71, np.nan], [0.3, 0.55, np.nan, np.nan], [0.25, 0.4, 0.6, 1.1]]),
        share=np.array([[0.3, 0.45, 0.25, 0.0], [0.6, 0.4, 0.0, 0.0], [0.2, 0.3, 0.3, 0.2]]),
    )
    tail = np.array([0.0, 0.15e-5, 0.0])
    g = stepwise_conductance(t, rup, 1e-6, 1e-5, tail, np.array([np.inf, 3.0, np.inf]))
    g += np.array([0.01, 0.02, 0.05])[:, None] * 1e-5 * rng.standard_normal(g.shape)
    names = ["3 ruptures, noise 1%", "2 ruptures + slow tail, 2%", "4 ruptures, noise 5%"]
    for line in failed_fits_page(names, np.broadcast_to(t, g.shape).copy(), g, OUT):
        print(line)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
