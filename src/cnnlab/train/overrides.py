"""Reading a job's command-line overrides: which keys say what a job is (its name, its row in a
summary), and which only say where or how it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ALWAYS_EXCLUDED", "JobInfo", "parse_overrides", "swept_overrides"]

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


@dataclass
class JobInfo:
    """What Hydra knows about the job that started a run: its command-line ``overrides``, those a
    sweep varied (``swept``: ``("pool", "avg")``, in command-line order) and the ``experiment=``
    choice. A checkpoint keeps it, so a resumed run keeps its label (the resume's own command line
    is ``resume=auto hydra.run.dir=...``)."""

    overrides: list[str] = field(default_factory=list)
    swept: list[tuple[str, Any]] = field(default_factory=list)
    experiment: str | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "overrides": list(self.overrides),
            "swept": [list(p) for p in self.swept],
            "experiment": self.experiment,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> JobInfo:
        return cls(list(state["overrides"]), [tuple(p) for p in state["swept"]], state["experiment"])
