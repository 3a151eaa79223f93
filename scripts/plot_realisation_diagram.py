"""Draw docs/img/realisation.png: card or record -> realisation -> backends (run from the project root)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

BOXES = {
    "card": (
        0.02,
        0.66,
        "device card (TOML)\nnominal law, bias law, window,\npulse law, spreads, stuck fractions",
    ),
    "record": (
        0.02,
        0.20,
        "calibration record (JSON, schema 2)\nper device: fitted law + bias law,\npulse response, status",
    ),
    "real": (
        0.36,
        0.40,
        (
            "device_models.realisation\nRealisation(dt_s, seed, (H, K))\n\nassign_devices: (2, H, K)\n"
            "bias_for_lambda -> bias, lambda achieved\nlambda_range / trainable_lambda_range\n"
            "pulse_for_write, energies"
        ),
    ),
    "emu": (0.74, 0.78, "emulated backend\n+ fault-aware programming\n(device_models.programming)"),
    "aih": (0.74, 0.52, "aihwkit backend"),
    "lab": (0.74, 0.27, "lab backend (instruments)"),
    "map": (0.74, 0.03, "calibrate map / hardware-aware\ntraining (trainable range)"),
}


def main() -> None:
    fig, ax = plt.subplots(figsize=(11, 5.2))
    ax.set_axis_off()
    size = {"real": (0.3, 0.42)}
    centers = {}
    for key, (x, y, text) in BOXES.items():
        w, h = size.get(key, (0.24, 0.17))
        color = "#dbe9f6" if key == "real" else "#f3f3f3"
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.01", fc=color, ec="0.3"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8.5)
        centers[key] = (x, y, w, h)
    laws = "device_models.laws\nrelaxation phi(t), step_retention\n(the one tau -> lambda)"
    ax.text(0.51, 0.93, laws, ha="center", va="center", fontsize=8, style="italic")

    def arrow(a: str, b: str) -> None:
        xa, ya, wa, ha = centers[a]
        xb, yb, _, hb = centers[b]
        start = (xa + wa, ya + ha / 2)
        end = (xb, yb + hb / 2)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color="0.25"))

    for src in ("card", "record"):
        arrow(src, "real")
    for dst in ("emu", "aih", "lab", "map"):
        arrow("real", dst)
    ax.add_patch(
        FancyArrowPatch((0.51, 0.88), (0.51, 0.83), arrowstyle="-|>", mutation_scale=12, color="0.5")
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig("docs/img/realisation.png", dpi=130)


if __name__ == "__main__":
    main()
