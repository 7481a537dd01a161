"""Every command the README and its guides (``docs/site/guides``) show runs as written on a fresh
clone (issues 16, 42): the fenced ``bash`` blocks and the inline ``python ...`` commands, each in
a shell with the virtual environment's ``python`` first on PATH (what ``source .venv/bin/activate``
gives). Training commands are shortened with overrides appended (two steps, one validation batch,
no analysis, and ``data=synthetic`` except for ``make train``, which finds the real CIFAR-10
through ``.env`` when it is present), benchmarks to one step timed once, outputs go to a temporary
folder, and placeholders (``outputs/<date>/<run>``, ``<date_time>``) name a run and a sweep made
here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_train import ROOT, clean_env

pytestmark = pytest.mark.slow
GUIDES = sorted((ROOT / "docs" / "site" / "guides").glob("*.md"))
README = "\n".join(path.read_text() for path in [ROOT / "README.md", *GUIDES])  # and the guides it points to
VENV_BIN = Path(sys.executable).parent
HAS_CIFAR = (Path(os.environ.get("CNNLAB_DATA", ROOT.parent / "shared" / "data")) / "cifar-10-batches-py").is_dir()
SHORT = [
    "trainer.max_steps=2",
    "trainer.limit_val_batches=1",
    "trainer.progress_bar=false",
    "logger.analysis=false",
    "logger.log_images=false",
]
SYNTHETIC = [*SHORT, "data=synthetic"]


def readme_commands() -> list[str]:
    """Commands of the README's bash blocks, then inline `python ...` commands (not templates)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith("#") and command not in commands:
                commands.append(command)
    for inline in re.findall(r"`(python [^`]+)`", README):
        if not re.search(r"\.\.\.|\[overrides\]", inline) and inline not in commands:
            commands.append(inline)
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_the_workflow():
    """The extraction finds what a user is shown (so a reformatted README cannot silently skip them)."""
    for expected in ("make train", "make test", "source .venv/bin/activate", "python -m cnnlab.compare",
                     "python train.py hparams_search=optuna", "python -m cnnlab.analyze signal"):  # fmt: skip
        assert any(c.startswith(expected) for c in COMMANDS), expected
    assert len(COMMANDS) >= 20


def shell(command: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**clean_env(), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A finished run and a finished sweep for the placeholders."""
    base = tmp_path_factory.mktemp("readme")
    run, sweep = base / "run", base / "sweep"
    for command in (
        f"python train.py {' '.join(SYNTHETIC)} hydra.run.dir={run}",
        f"python train.py -m pool=max,avg {' '.join(SYNTHETIC)} hydra.sweep.dir={sweep}",
    ):
        result = shell(command)
        assert result.returncode == 0, result.stdout + result.stderr
    return {"base": base, "run": run, "sweep": sweep}


def prepare(command: str, made: dict[str, Path], index: int) -> str:
    """The command with its placeholders filled and, for training, the shortening overrides."""
    out = made["base"] / f"command{index}"
    command = command.replace("outputs/<date>/<run>", str(made["run"])).replace("<run dir>", str(made["run"]))
    command = command.replace("outputs/multirun/<date_time>", str(made["sweep"])).replace(
        "<dirs...>", str(made["sweep"])
    )
    command = command.replace("--out docs/site/images", f"--out {out}")
    if command.startswith("python -m cnnlab.compare"):
        command += f" --out {out}/compare.png"
    if command.startswith("python -m cnnlab.analyze signal"):
        command += f" --out {out}"
    if command.startswith("python benchmarks/"):  # one timing of one step: the command runs, it does not measure
        command += " --steps 1 --repeats 1"
    if command.startswith("python train.py"):
        extra = list(SYNTHETIC)
        if " -m " in command or "hparams_search=" in command:
            extra.append(f"hydra.sweep.dir={out}")
            if "hparams_search=" in command:
                extra.append("hydra.sweeper.n_trials=2")
        elif "hydra.run.dir=" not in command:
            extra.append(f"hydra.run.dir={out}")
        command += " " + " ".join(extra)
    return command


@pytest.mark.parametrize("index", range(len(COMMANDS)), ids=[c[:60] for c in COMMANDS])
def test_readme_command_runs_as_written(index, made):
    command = COMMANDS[index]
    if command in ("make test",):
        pytest.skip("`make test` is what CI runs (.ci/run), this suite included")
    if "hydra/launcher=slurm" in command and shutil.which("sbatch") is None:
        pytest.skip("no Slurm here (sbatch not found)")
    if command.startswith(("make", "source")) and not (ROOT / ".venv" / "bin" / "python").is_file():
        pytest.skip("no .venv: this suite runs outside the Makefile's environment")
    if command == "make train":
        out = made["base"] / f"command{index}"
        real = [*SHORT, "data.eval_batch_size=100"] if HAS_CIFAR else SYNTHETIC
        command = f"make train ARGS='{' '.join(real)} hydra.run.dir={out}'"
    elif command.startswith("source "):
        command += " && python -c 'import cnnlab, hydra, tensorboard'"
    elif command.startswith("tensorboard "):
        command = prepare(command, made, index) + " --inspect"
    else:
        command = prepare(command, made, index)
    result = shell(command)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
