"""Screenshots of TensorBoard for a small sweep, as a user's browser shows it:

    python docs/screenshots.py                          # into outputs/screenshots/
    python docs/screenshots.py --out docs/site/images        # the guides' images

Trains a 2×2 ``conv × pool`` sweep of the ``simple`` model on synthetic data (3 epochs of 5
batches, under a minute on 2 cores), serves it with TensorBoard on a free loopback port and takes
``tensorboard_hparams.png`` (the HParams table) and ``tensorboard_time_series.png`` (the Time
Series tab) with headless Chromium (Debian's ``chromium``). Where no Chromium is installed it says
so and exits 0 without training.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cnnlab.train.sweeps.tensorboard_server import serve_tensorboard

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["data=synthetic", "model=simple", "conv=standard,separable", "pool=max,avg", "trainer.max_epochs=3",
         "trainer.limit_train_batches=5", "trainer.progress_bar=false", "logger.analysis=false"]  # fmt: skip
# headless, and none of Chromium's own network traffic (a closed network refuses it)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=20000"]  # fmt: skip
PAGES = {
    "tensorboard_hparams.png": ("#hparams", "1400,520"),
    "tensorboard_time_series.png": ("#timeseries", "1400,1000"),
}


def screenshot(chromium: str, url: str, out: Path, window: str) -> Path:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window}",
                        f"--screenshot={out}", url], check=True, capture_output=True, timeout=120)  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python docs/screenshots.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/screenshots"), help="folder for the PNGs")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no Chromium on this machine (Debian: apt-get install chromium): no screenshots taken")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as sweep:
        subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *SWEEP, f"hydra.sweep.dir={sweep}"],
                       check=True, capture_output=True, cwd=ROOT)  # fmt: skip
        with serve_tensorboard(Path(sweep)) as url:
            for name, (page, window) in PAGES.items():
                print(screenshot(chromium, f"{url}/{page}", args.out / name, window))
    return 0


if __name__ == "__main__":
    sys.exit(main())
