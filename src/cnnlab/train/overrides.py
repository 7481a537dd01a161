"""Reading a job's command-line overrides: which keys say what a job is (its name, its row in a
summary), and which only say where or how it runs."""

from __future__ import annotations

from typing import Any

__all__ = ["ALWAYS_EXCLUDED", "parse_overrides", "swept_overrides"]

# Never part of a job's name: they change where or how a job runs, not what it is.
ALWAYS_EXCLUDED = ("trainer.progress_bar", "data.root", "paths.data_dir", "resume")


def parse_overrides(arguments: list[str]):
    """Hydra's parsed form of command-line overrides (``key=value``, sweeps, ``+key``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(arguments)


def swept_overrides(overrides: list[str], excluded: set[str]) -> list[tuple[str, Any]]:
    """``[("pool", "avg"), ("optimizer.lr", 0.1)]``: a job's overrides that are not excluded
    from its name (in a sweep: what was swept; in a single run: what was set)."""
    out = []
    for override in parse_overrides(overrides):
        key = override.key_or_group
        if key not in excluded and not key.startswith("hydra"):
            value = override.value()
            out.append((key, value if isinstance(value, (bool, int, float, str)) else str(value)))
    return out
