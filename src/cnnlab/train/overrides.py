"""Reading a job's command-line overrides: which keys say what a job is (its name, its row in a
summary), and which only say where or how it runs."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ALWAYS_EXCLUDED",
    "JobInfo",
    "misplaced_group_key",
    "parse_overrides",
    "swept_overrides",
    "unknown_group_choice",
]

# Never part of a job's name: they change where or how a job runs, not what it is.
ALWAYS_EXCLUDED = ("trainer.progress_bar", "data.root", "paths.data_dir", "resume")


def parse_overrides(arguments: list[str]):
    """Hydra's parsed form of command-line overrides (``key=value``, sweeps, ``+key``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(arguments)


def unknown_group_choice(arguments: list[str], configs: Path) -> str | None:
    """The first command-line override that picks an option its config group (a folder of
    ``configs``) does not have, in one line with the closest options (``model=resnet19`` → "did you
    mean resnet18?"), or None. Sweeps check every choice; Hydra's own groups (``hydra/...``), globs
    and malformed overrides are left to Hydra."""
    from hydra.core.override_parser.types import ChoiceSweep

    try:
        overrides = parse_overrides([a for a in arguments if "=" in a and not a.startswith("-")])
    except Exception:  # Hydra's grammar error says it better
        return None
    for override in overrides:
        group, value = override.key_or_group, override.value()
        folder = configs / group
        if group.startswith("hydra") or override.is_delete() or not folder.is_dir():
            continue
        options = sorted(path.stem for path in folder.glob("*.yaml"))
        for choice in value.list if isinstance(value, ChoiceSweep) else [value]:
            if isinstance(choice, (str, int, float)) and str(choice) not in options:
                close = difflib.get_close_matches(str(choice), options, n=2)
                hint = f"; did you mean {' or '.join(close)}?" if close else ""
                return f"{group}={choice}: configs/{group}/ has no {choice}.yaml{hint} (options: {', '.join(options)})"
    return None


def misplaced_group_key(arguments: list[str], configs: Path) -> str | None:
    """The first command-line override of a key that no option of its config group has
    (``conv.kernel_size=4``: the ``conv`` group says which layers fill the conv slots, not their
    sizes), in one line naming the group's keys and, for the slot groups, where a layer's own
    settings live; or None. Added keys (``+``) are the config check's to judge."""
    try:
        overrides = parse_overrides([a for a in arguments if "=" in a and not a.startswith("-")])
    except Exception:  # Hydra's grammar error says it better
        return None
    import yaml

    texts = (path.read_text() for path in configs.glob("*/*.yaml"))
    global_files = [text for text in texts if text.startswith("# @package _global_")]  # read once
    for override in overrides:
        group, _, key = override.key_or_group.partition(".")
        folder = configs / group
        if not key or override.is_add() or override.is_delete() or group == "hydra" or not folder.is_dir():
            continue
        keys = set()
        for path in folder.glob("*.yaml"):
            keys |= set(yaml.safe_load(path.read_text()) or {})
        for text in global_files:  # and what the global files (experiments, debug) set in it
            section = (yaml.safe_load(text) or {}).get(group)
            keys |= set(section) if isinstance(section, dict) else set()
        name = key.split(".")[0]
        if name in keys:
            continue
        where = (f"; a layer's own settings are model.layers.<N>.{group}.{name} (the shape table, "
                 "python -m cnnlab.analyze, lists the paths)" if group in ("conv", "pool") else "")  # fmt: skip
        close = difflib.get_close_matches(name, sorted(keys), n=1)
        hint = f"; did you mean {group}.{close[0]}?" if close else ""
        listed = ", ".join(sorted(keys))
        return f"{override.key_or_group}: no {group}= option has {name} (its keys: {listed}){hint}{where}"
    return None


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
