"""Runs that survive: kill and resume bit-identically, stop cleanly on signals, fall back past
damaged checkpoints, refuse unsafe files, stop with a hint on NaN, report an unwritable disk,
and train with 2 processes (DDP, gloo) exactly like 1 process with the same global batch."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from cnnlab.train.runs.checkpoint import CheckpointManager, CheckpointWriteError, load_checkpoint, save_checkpoint
from tests.e2e.test_train import FAST, ROOT, clean_env, final_weights, train

pytestmark = pytest.mark.slow
DETERMINISTIC = [*FAST, "model=simple", "trainer.deterministic=true", "logger.analysis=false"]


def start(*overrides: str, kill_after: float = 240, python_code: str | None = None) -> subprocess.Popen:
    """Start train.py (or ``python -c python_code``); a watchdog kills it after ``kill_after``
    seconds so no test can hang."""
    process = subprocess.Popen(
        [sys.executable, "-c", python_code] if python_code else [sys.executable, str(ROOT / "train.py"), *overrides],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watchdog = threading.Timer(kill_after, process.kill)
    watchdog.daemon = True
    watchdog.start()
    return process


def signal_after_the_first_epoch(process: subprocess.Popen, signum: int) -> str:
    """Send ``signum`` when the first epoch's line is printed; the whole output once the process ended."""
    output = ""
    for line in process.stdout:
        output += line
        if line.startswith("epoch 1/"):
            process.send_signal(signum)
    process.wait(timeout=60)
    return output


def wait_for_step_checkpoint(run_dir: Path, step: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(int(p.stem.split("-")[1]) >= step for p in (run_dir / "checkpoints").glob("step-*.pt")):
            return
        time.sleep(0.05)
    raise TimeoutError(f"no checkpoint for step {step} in {run_dir}")


def test_sigkill_at_an_arbitrary_step_then_resume_is_bit_identical(tmp_path):
    common = [*DETERMINISTIC, "trainer.max_epochs=2", "trainer.checkpoint_every_n_steps=1"]
    train(*common, f"hydra.run.dir={tmp_path / 'straight'}")
    process = start(*common, f"hydra.run.dir={tmp_path / 'killed'}")
    wait_for_step_checkpoint(tmp_path / "killed", 2)  # mid-epoch: 3 steps per epoch
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    resumed = train(*common, "resume=auto", f"hydra.run.dir={tmp_path / 'killed'}")
    assert "Resumed from" in resumed.stdout
    straight, killed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    assert all(torch.equal(straight[name], killed[name]) for name in straight)
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("straight", "killed")]
    untimed = [[{k: v for k, v in h.items() if "per_sec" not in k} for h in m["history"]] for m in metrics]
    assert untimed[0] == untimed[1] and metrics[0]["val_acc"] == metrics[1]["val_acc"]


def test_sigterm_finishes_the_step_checkpoints_and_exits_143(tmp_path):
    common = [*DETERMINISTIC, "trainer.max_epochs=50"]
    process = start(*common, f"hydra.run.dir={tmp_path}")
    output = signal_after_the_first_epoch(process, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "Received SIGTERM" in output and f"python train.py resume=auto hydra.run.dir={tmp_path}" in output
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert saved["state"]["step"] >= 3


def test_sigusr2_checkpoints_the_step_then_hands_over_to_the_handler_installed_before(tmp_path):
    """submitit signals USR2 before the time limit and requeues from its own handler: the step
    finishes, the checkpoint is written, then that handler runs (a stand-in: it records what the
    checkpoint directory holds and exits 3, as submitit's exits after requeueing)."""
    marker = tmp_path / "handed_over"
    run_dir = tmp_path / "run"
    overrides = [*DETERMINISTIC, "trainer.max_epochs=50", f"hydra.run.dir={run_dir}"]
    stand_in = (
        "import os, runpy, signal, sys\n"
        "def requeue(signum, frame):\n"
        f"    open({str(marker)!r}, 'w').write(' '.join(sorted(os.listdir({str(run_dir / 'checkpoints')!r}))))\n"
        "    sys.exit(3)\n"
        "signal.signal(signal.SIGUSR2, requeue)\n"
        f"sys.argv = ['train.py', *{overrides!r}]\n"
        "runpy.run_path('train.py', run_name='__main__')\n"
    )
    process = start(python_code=stand_in)
    output = signal_after_the_first_epoch(process, signal.SIGUSR2)
    assert process.returncode == 3, output
    assert "Received SIGUSR2" in output and "last.pt" in marker.read_text().split()
    step = load_checkpoint(run_dir / "checkpoints" / "last.pt")["state"]["step"]
    assert f"Stopped by signal at step {step}:" in output and step >= 3


def test_a_second_ctrl_c_stops_at_once_and_says_where_the_last_checkpoint_is(tmp_path):
    """Ctrl-C twice inside one step (step 4: the first epoch's 3 steps are checkpointed): no
    traceback, the step is not checkpointed, the message names the last checkpoint and the resume
    command, exit status 130."""
    run_dir = tmp_path / "run"
    overrides = [*DETERMINISTIC, "trainer.max_epochs=50", f"hydra.run.dir={run_dir}"]
    twice_in_step_4 = (
        "import os, runpy, signal, sys\n"
        "from cnnlab.train.engine import state\n"
        "step, calls = state.train_step, []\n"
        "def interrupted(*args, **kwargs):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 4:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return step(*args, **kwargs)\n"
        "state.train_step = interrupted\n"
        f"sys.argv = ['train.py', *{overrides!r}]\n"
        "runpy.run_path('train.py', run_name='__main__')\n"
    )
    process = start(python_code=twice_in_step_4)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    last = run_dir / "checkpoints" / "step-00000003.pt"
    assert "Second Ctrl-C: stopped at once in step 4, not checkpointed." in output
    assert (
        f"The last checkpoint is {last}" in output and f"python train.py resume=auto hydra.run.dir={run_dir}" in output
    )
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["state"]["step"] == 3


def test_damaged_checkpoints_are_reported_and_skipped(tmp_path, capsys):
    manager = CheckpointManager(tmp_path, keep_last_k=3)
    for step in (1, 2, 3):
        manager.save({"state": {"step": step}}, step)
    assert sorted(p.name for p in tmp_path.glob("step-*.pt")) == [
        "step-00000001.pt",
        "step-00000002.pt",
        "step-00000003.pt",
    ]
    newest = tmp_path / "step-00000003.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated (last.pt is the same file: a hard link)
    saved, path = manager.load_latest()
    assert path.name == "step-00000002.pt" and saved["state"]["step"] == 2
    assert "last.pt is damaged" in capsys.readouterr().out


def test_keep_last_k(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last_k=2)
    for step in range(1, 6):
        manager.save({"step": step}, step)
    assert [p.name for p in manager.step_files()] == ["step-00000005.pt", "step-00000004.pt"]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 5


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/cnnlab_ckpt_pwned",))


def test_checkpoints_load_weights_only(tmp_path):
    """A checkpoint that would run code if unpickled naively is refused, by name."""
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": _Exploit()}, path)
    with pytest.raises(RuntimeError, match=r"evil\.pt is damaged or not a cnnlab checkpoint"):
        load_checkpoint(path)
    assert not Path("/tmp/cnnlab_ckpt_pwned").exists()


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint({"step": 1}, tmp_path / "last.pt")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointWriteError, match=r"No space left on device\. The previous checkpoint is intact"):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_nan_loss_stops_with_a_hint_or_is_skipped(tmp_path):
    exploding = [*DETERMINISTIC, "trainer.max_epochs=2", "optimizer.lr=1e12", "scheduler=constant"]
    result = train(*exploding, f"hydra.run.dir={tmp_path / 'stop'}", check=False)
    assert result.returncode != 0
    assert "became non-finite at step" in result.stderr and "lower optimizer.lr" in result.stderr
    skipped = train(*exploding, "trainer.skip_nonfinite_steps=true", f"hydra.run.dir={tmp_path / 'skip'}")
    assert json.loads((tmp_path / "skip" / "metrics.json").read_text())["skipped_steps"] > 0, skipped.stdout


def test_two_processes_with_ddp_equal_one_process(tmp_path):
    """torchrun --nproc_per_node=2 (gloo) gives the same model as one process with the same global batch."""
    common = [*DETERMINISTIC, "trainer.max_epochs=2", "data.batch_size=64"]
    train(*common, f"hydra.run.dir={tmp_path / 'single'}")
    env = clean_env()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            str(ROOT / "train.py"),
            *common,
            f"hydra.run.dir={tmp_path / 'ddp'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    single, ddp = final_weights(tmp_path / "single"), final_weights(tmp_path / "ddp")
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-4, atol=1e-5)
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("single", "ddp")]
    assert metrics[1]["world_size"] == 2
    assert abs(metrics[0]["val_loss"] - metrics[1]["val_loss"]) < 1e-4
    assert metrics[0]["val_acc"] == pytest.approx(metrics[1]["val_acc"], abs=1 / 512)


def test_gpu_out_of_memory_suggests_a_smaller_batch(tmp_path, monkeypatch):
    """Simulated in-process (CI has no GPU): a CUDA OOM inside a step becomes a hint."""
    from hydra import compose, initialize_config_dir

    import cnnlab.train.engine.loop as loop
    import cnnlab.train.engine.steps as steps

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(steps, "compute_loss", out_of_memory)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*DETERMINISTIC, f"paths.output_dir={tmp_path}"])
    with pytest.raises(RuntimeError, match=r"CUDA out of memory at data\.batch_size=64: try data\.batch_size=32"):
        loop.run(cfg)


def test_missing_checkpoint_path_is_reported_resolved(tmp_path):
    result = train(
        *FAST, "trainer.eval_only=true", "ckpt_path=nowhere/best.pt", f"hydra.run.dir={tmp_path}", check=False
    )
    assert result.returncode != 0 and f"checkpoint not found: {ROOT / 'nowhere' / 'best.pt'}" in result.stderr


def test_ddp_run_killed_then_resumed_matches_uninterrupted_ddp(tmp_path):
    common = [*DETERMINISTIC, "trainer.max_epochs=2", "data.batch_size=64", "trainer.checkpoint_every_n_steps=1"]

    def torchrun(run_dir: Path, *extra: str, port: int) -> subprocess.Popen:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}"]
        process = subprocess.Popen(
            [*command, str(ROOT / "train.py"), *common, *extra, f"hydra.run.dir={run_dir}"],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

        def kill_group() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

        watchdog = threading.Timer(240, kill_group)
        watchdog.daemon = True
        watchdog.start()
        return process

    straight = torchrun(tmp_path / "straight", port=29521)
    assert straight.wait(timeout=300) == 0, straight.stdout.read()
    killed = torchrun(tmp_path / "killed", port=29522)
    wait_for_step_checkpoint(tmp_path / "killed", 2)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    resumed = torchrun(tmp_path / "killed", "resume=auto", port=29523)
    output = resumed.stdout.read()
    assert resumed.wait(timeout=300) == 0 and "Resumed from" in output, output
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0)
