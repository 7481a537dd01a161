"""Compare finished runs: one table (what each run set, final and best val_acc, val_loss,
images/s, wall time; mean ± std over seeds) and their validation curves in one PNG.

python -m cnnlab.compare outputs/multirun/2026-11-25_10-00-00           # a sweep
python -m cnnlab.compare outputs/2026-11-25/10-00-00_a outputs/... --out curves.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .train.sweeps.summary import find_runs, format_summary, plot_curves


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnnlab.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run directories, or folders holding them (a sweep)")
    parser.add_argument(
        "--out", type=Path, help="the curves' PNG (default: compare.png beside one sweep, else outputs/compare.png)"
    )
    args = parser.parse_args(argv)
    if args.out is None:  # beside the one sweep compared (two sweeps' pictures no longer overwrite each other)
        one_sweep = len(args.dirs) == 1 and args.dirs[0].is_dir()
        args.out = args.dirs[0] / "compare.png" if one_sweep else Path("outputs/compare.png")
    records = find_runs(args.dirs)
    if not records:
        print(f"no finished training runs (metrics.json with a history) under {', '.join(map(str, args.dirs))}")
        return 1
    print(format_summary(records))
    print(f"\nvalidation curves: {plot_curves(records, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
