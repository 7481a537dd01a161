"""Compare finished runs: one table (what each run set, final and best val_acc, val_loss,
images/s, wall time; mean ± std over seeds), their validation curves in one PNG, and paired
comparisons against a baseline matched by seed (difference, 95% interval, p-value, seeds needed).

python -m cnnlab.compare outputs/multirun/2026-11-25_10-00-00                       # a sweep
python -m cnnlab.compare outputs/multirun/2026-11-25_10-00-00 --baseline conv=torch # B vs A in it
python -m cnnlab.compare A_DIR B_DIR         # B's runs against A's (each one configuration)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .train.sweeps.paired import compare_paired, format_paired, name_of, pairs_against, write_paired
from .train.sweeps.summary import RunRecord, configurations, find_runs, format_summary, plot_curves


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnnlab.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run directories, or folders holding them (a sweep)")
    parser.add_argument(
        "--out", type=Path, help="the curves' PNG (default: compare.png beside one sweep, else outputs/compare.png)"
    )
    parser.add_argument(
        "--baseline",
        metavar="KEY=VALUE",
        help="compare each configuration that set KEY to another value with the one that set KEY=VALUE and agrees "
        "on every other swept key, seed by seed (without it, two directories: the second's runs against the first's)",
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
    try:
        pairs = _pairs(args.dirs, records, args.baseline)
    except ValueError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    if pairs:
        comparisons = [
            compare_paired(baseline, other, (name_of(baseline), name_of(other))) for baseline, other in pairs
        ]
        print("\n" + "\n\n".join(map(format_paired, comparisons)))
        written = write_paired(comparisons, args.out.parent)
        print(f"\npaired comparison: {', '.join(map(str, written))} (TensorBoard: the run named compare)")
    return 0


def _pairs(dirs: list[Path], records: list[RunRecord], baseline: str | None) -> list[tuple[list, list]]:
    """(baseline runs, other runs) to compare: each other configuration against ``--baseline``'s, or
    without it, of two directories the second's runs against the first's."""
    if baseline:
        return pairs_against(records, baseline)
    if len(dirs) != 2:
        return []
    sides = [configurations(find_runs([d])) for d in dirs]
    for d, groups in zip(dirs, sides, strict=True):
        if len(groups) != 1:
            raise ValueError(
                f"{d} holds runs of {len(groups)} configurations; a paired comparison of two directories needs "
                "one in each (or give --baseline KEY=VALUE to compare inside them)"
            )
    return [(sides[0][0], sides[1][0])]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
