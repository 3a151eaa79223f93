"""Screenshots of ``hwloop view`` following real runs, for the docs (docs/img/view_*.png).

Starts a 16 x 16 simulated campaign (``hwloop calibrate run`` on ``xbarsim://16x16``) and a mixed-mode
game (``hwloop pong --backend lab``), points ``hwloop view`` at each file while it is being written,
and has headless Chromium (tests/chromium_cdp.py) take a screenshot mid-run. Prints what the page
stated and what the file held at that moment.

    python scripts/view_screenshots.py [--out docs/img] [--work /tmp/hwloop-view-shots]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from chromium_cdp import Chromium  # noqa: E402

HWLOOP = [sys.executable, "-m", "hwloop.cli"]
CAMPAIGN_CONFIG = "[decay]\ncycles = 4\n"


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the writer of {path} ended or stalled before creating it")
        time.sleep(0.2)


def shoot(writer_args: list[str], path: Path, png: Path, key: str, warmup_s: float) -> None:
    """Run the writer, follow its file with hwloop view, screenshot the page while it runs."""
    writer = subprocess.Popen(writer_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    viewer = None
    try:
        _wait_for_file(path, writer)
        time.sleep(warmup_s)
        viewer = subprocess.Popen(
            [*HWLOOP, "view", str(path), "--period-ms", "500"], stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        assert viewer.stdout is not None
        url = re.search(r"http://\S+/", viewer.stdout.readline())
        if url is None:
            raise SystemExit("hwloop view printed no URL")
        with Chromium(width=1100, height=1250, timeout_s=60) as browser:
            browser.navigate(url.group(0))
            text = browser.wait_for(lambda t: key in t, 60)
            first = re.search(re.escape(key) + r" (\S+)", text)
            time.sleep(3)
            text = browser.text()
            later = re.search(re.escape(key) + r" (\S+)", text)
            browser.screenshot(png)
        still = writer.poll() is None
        print(
            f"{png.name}: page said {key} {first and first.group(1)} then {later and later.group(1)}; "
            f"writer still running at the screenshot: {still}"
        )
    finally:
        for proc in (viewer, writer):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hwloop-view-shots"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    campaign = args.work / "campaign16.h5"
    game = args.work / "game.h5"
    for p in (campaign, game):
        p.unlink(missing_ok=True)
    config = args.work / "campaign.toml"
    config.write_text(CAMPAIGN_CONFIG)
    shoot(
        [
            *HWLOOP,
            "calibrate",
            "run",
            "--resource",
            "xbarsim://16x16?seed=1",
            "--config",
            str(config),
            "--out",
            str(campaign),
        ],
        campaign,
        args.out / "view_campaign.png",
        "decay units",
        2.0,
    )
    shoot(
        [
            *HWLOOP,
            "pong",
            "--backend",
            "lab",
            "--backend-option",
            "rows=0:8",
            "--backend-option",
            "cols=2592:2600",
            "--backend-option",
            f"log={game}",
            "--episodes",
            "1",
        ],
        game,
        args.out / "view_game.png",
        "steps",
        15.0,
    )


if __name__ == "__main__":
    main()
