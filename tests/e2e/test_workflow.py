"""The experiment workflow as a user meets it (issue 16): data found through the config, resume and
evaluation that follow the run's own config, TensorBoard that separates per-step from per-epoch
scalars and puts what was swept first, job names by what was swept, sweep summaries and
``cnnlab.compare``, the Optuna search, readable console and logs, one-line config errors that leave
no directory behind, the helper CLIs, the debug group and callbacks. Each test runs the commands
in a subprocess, as a user would."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from cnnlab.models import CONVS, POOLS
from cnnlab.train.config import KNOWN_KEYS
from cnnlab.train.sweeps.summary import find_runs
from cnnlab.train.sweeps.tensorboard_server import serve_tensorboard, tensorboard_json
from tests.e2e.test_train import FAST, ROOT, clean_env, train

pytestmark = pytest.mark.slow
QUIET = [*FAST, "model=simple", "logger.analysis=false"]


def run_python(*args: str, check: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def events(run_dir: Path) -> EventAccumulator:
    return EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0}).Reload()


def hparams_experiment(run_dir: Path) -> plugin_data_pb2.HParamsPluginData:
    accumulator = events(run_dir)
    content = accumulator.SummaryMetadata("_hparams_/experiment").plugin_data.content
    return plugin_data_pb2.HParamsPluginData.FromString(content)


# ---- 1. the data location is config


def test_data_dir_comes_from_the_config_the_environment_and_dotenv(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        assert compose(config_name="train", overrides=["paths.output_dir=x"]).data.root == str(tmp_path)
        monkeypatch.delenv("CNNLAB_DATA")
        monkeypatch.setenv("PROJECT_ROOT", "/repo")
        assert compose(config_name="train", overrides=["paths.output_dir=x"]).data.root == "/repo/data"
        explicit = compose(config_name="train", overrides=["paths.output_dir=x", "paths.data_dir=/d"])
        assert explicit.data.root == "/d"
    # train.py reads .env, and a variable set in the environment wins over it
    env = {**clean_env(), "CNNLAB_DATA": str(tmp_path / "nowhere")}
    result = subprocess.run(
        [sys.executable, "train.py", "data=cifar10", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and f"looked for {tmp_path / 'nowhere'}" in result.stderr
    assert "paths.data_dir" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# ---- 2. resume and evaluation follow the run's own config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One epoch with settings the defaults do not have (batch 32, label smoothing 0.1)."""
    run_dir = tmp_path_factory.mktemp("trained")
    train(*QUIET, "trainer.max_epochs=1", "data.batch_size=32", "trainer.label_smoothing=0.1",
          f"hydra.run.dir={run_dir}")  # fmt: skip
    return run_dir


def test_resume_continues_with_the_runs_own_config(trained_run, tmp_path):
    # a copy, so the module's run stays as it was
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    result = train("resume=auto", f"hydra.run.dir={run_dir}")
    assert "Using the run's own config" in result.stdout and "Resumed from" in result.stdout
    saved = (run_dir / "config.yaml").read_text()
    assert "batch_size: 32" in saved and "label_smoothing: 0.1" in saved and "name: synthetic" in saved
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1  # nothing left to do
    assert metrics["val_images"] == 2 * 256  # trainer.limit_val_batches=2 of data.eval_batch_size=256
    # the run keeps the command line that started it (its label), not the resume's
    assert "data.batch_size=32" in metrics["job"]["overrides"] and "resume=auto" not in metrics["job"]["overrides"]
    assert "data.batch_size=32" in find_runs([run_dir])[0].label
    # Hydra's record of the command that started the run stays; the resume's is saved beside it
    assert "data.batch_size=32" in OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "overrides.yaml"))
    assert OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "command_2" / "overrides.yaml"))[0].startswith(
        "resume=auto"
    )

    refused = train("resume=auto", "trainer.max_epochs=3", f"hydra.run.dir={run_dir}", check=False)
    assert refused.returncode == 2
    assert "trainer.max_epochs: the run has 1, the command line asks for 3" in refused.stderr
    assert "allow_config_change=true" in refused.stderr and "Traceback" not in refused.stderr
    assert (run_dir / "checkpoints" / "last.pt").is_file()  # a refused resume touches nothing

    extended = train("resume=auto", "trainer.max_epochs=2", "allow_config_change=true", f"hydra.run.dir={run_dir}")
    assert "epoch 2/2" in extended.stdout
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 2


def test_resume_where_there_is_nothing_to_resume_is_an_error(trained_run, tmp_path):
    """``resume=auto`` in a mistyped or checkpoint-less directory: one line naming the directory,
    what it holds and the run beside it; nothing created or appended. ``resume=if_exists`` starts."""
    import shutil

    shutil.copytree(trained_run, tmp_path / "12-00-00_simple-standard-max")
    missing = tmp_path / "12-00-00_simple-standard-maxx"
    refused = train("resume=auto", f"hydra.run.dir={missing}", check=False)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert f"Error: resume=auto: nothing to resume in {missing}: it does not exist." in refused.stderr
    assert f"Runs beside it with a checkpoint: {tmp_path / '12-00-00_simple-standard-max'}." in refused.stderr
    assert not missing.exists() and "epoch 1/" not in refused.stdout

    empty = tmp_path / "failed"
    empty.mkdir()
    (empty / "train.log").write_text("an earlier run's log\n")
    refused = train("resume=auto", f"hydra.run.dir={empty}", check=False)
    assert refused.returncode == 2 and "it holds train.log but no checkpoint" in refused.stderr
    assert (empty / "train.log").read_text() == "an earlier run's log\n" and sorted(empty.iterdir()) == [
        empty / "train.log"
    ]

    started = train(*QUIET, "trainer.max_epochs=1", "resume=if_exists", f"hydra.run.dir={missing}")
    assert "epoch 1/1" in started.stdout and "Resumed from" not in started.stdout
    resumed = train("resume=if_exists", f"hydra.run.dir={missing}")
    assert "Resumed from" in resumed.stdout


def test_helper_and_launcher_failures_are_one_line(tmp_path):
    """``python -m cnnlab.analyze`` reports config errors as train.py does; a Slurm sweep where
    there is no Slurm stops before it creates its directory."""
    for override, message in (("pool=median", "Error: pool=median: configs/pool/ has no median.yaml (options: "),
                              ("+pool.sigm=1", "Error: config key pool.sigm: unknown key")):  # fmt: skip
        result = run_python("-m", "cnnlab.analyze", override, check=False)
        assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
        assert "Traceback" not in result.stderr and "Config search path" not in result.stderr
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    if shutil.which("srun"):
        pytest.skip("this machine has Slurm")
    result = train("-m", *QUIET, "hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path / 'sweep'}", check=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "hydra/launcher=slurm" in result.stderr and "no srun" in result.stderr
    assert not (tmp_path / "sweep").exists()


def test_eval_only_uses_the_checkpoints_config(trained_run, tmp_path):
    trained = json.loads((trained_run / "metrics.json").read_text())
    ckpt = f"ckpt_path={trained_run / 'checkpoints' / 'best.pt'}"
    result = train("trainer.eval_only=true", ckpt, "trainer.progress_bar=false", f"hydra.run.dir={tmp_path / 'e'}")
    evaluated = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert "Using the run's own config" in result.stdout
    # same model, data and loss (label smoothing 0.1) as the trained run: the same val_loss
    assert evaluated["val_loss"] == pytest.approx(trained["val_loss"], rel=1e-6)
    assert evaluated["val_acc"] == trained["val_acc"]

    wrong = train("trainer.eval_only=true", ckpt, "model=vgg", f"hydra.run.dir={tmp_path / 'w'}", check=False)
    assert wrong.returncode == 2 and "model: " in wrong.stderr and "model.name: the run has 'simple'" in wrong.stderr
    assert "size mismatch" not in wrong.stderr + wrong.stdout and not (tmp_path / "w").exists()
    forced = train("trainer.eval_only=true", ckpt, "model=vgg", "allow_config_change=true",
                   f"hydra.run.dir={tmp_path / 'f'}", check=False)  # fmt: skip
    assert forced.returncode == 2 and "does not fit model=vgg" in forced.stderr
    assert len(forced.stderr.strip().splitlines()) == 1


# ---- 3. TensorBoard


def test_tensorboard_keeps_step_and_epoch_scalars_apart_and_shows_what_was_swept_first(tmp_path):
    train("-m", *FAST, "model=simple", "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
          "conv=standard,torch", "pool=max,avg", f"hydra.sweep.dir={tmp_path}")  # fmt: skip
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(jobs) == 4
    accumulator = events(jobs[0])
    tags = accumulator.Tags()["scalars"]
    assert not [t for t in tags if t.startswith(("analysis/", "hparam/"))], tags
    for tag in tags:  # one value per step: no batch value and epoch mean at the same step
        steps = [event.step for event in accumulator.Scalars(tag)]
        assert len(steps) == len(set(steps)), tag
    assert len(accumulator.Scalars("train/step_loss")) == 6 and len(accumulator.Scalars("train/loss")) == 2
    experiment = hparams_experiment(jobs[0]).experiment
    names = [info.name for info in experiment.hparam_infos]
    assert names[:3] == ["conv", "pool", "experiment"], names
    assert [info.name for info in experiment.hparam_infos if info.differs] == ["conv", "pool"]
    metrics = [info.name.tag for info in experiment.metric_infos]
    assert metrics[0] == "val/acc", metrics
    # what a running TensorBoard serves its HParams table (it shows the first five columns)
    with serve_tensorboard(tmp_path) as url:
        served = tensorboard_json(url, "/data/plugin/hparams/experiment",
                                  {"experimentName": "", "hparamsLimit": 5, "includeMetrics": True})  # fmt: skip
        runs = tensorboard_json(url, "/data/runs")
        time_series = tensorboard_json(url, "/data/plugin/timeseries/tags")
    assert [info["name"] for info in served["hparamInfos"]][:2] == ["conv", "pool"], served["hparamInfos"]
    assert sorted(runs) == [job.name for job in jobs]  # runs named by their job directories, no "/tb"
    # Time Series lists tag groups by name and opens the first two: the loss/accuracy curves
    tags = {tag for run_tags in time_series["scalars"]["runTagInfo"].values() for tag in run_tags}
    tags |= set(time_series["images"]["tagRunSampledInfo"])
    assert sorted({tag.split("/")[0] for tag in tags})[:2] == ["train", "val"], sorted(tags)


# ---- 4. sweep job names, 5. summaries


def test_sweep_jobs_are_named_by_what_was_swept_and_summarised(tmp_path):
    result = train("-m", *QUIET, "trainer.max_epochs=1", "pool=max,avg", "seed=0,1", f"hydra.sweep.dir={tmp_path}")
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert names == ["0_pool=max,seed=0", "1_pool=max,seed=1", "2_pool=avg,seed=0", "3_pool=avg,seed=1"]
    summary = (tmp_path / "summary.md").read_text()
    assert "| pool | seed | val_acc | best_val_acc |" in summary and "Mean ± std over seeds" in summary
    rows = (tmp_path / "summary.csv").read_text().strip().splitlines()
    assert len(rows) == 5 and rows[0].startswith("pool,seed,val_acc")
    # the mean over seeds is the mean of the two jobs' val_acc
    accuracies = [json.loads((tmp_path / n / "metrics.json").read_text())["val_acc"] for n in names[:2]]
    seeds = (tmp_path / "summary_seeds.csv").read_text().splitlines()[1]
    assert seeds.startswith("max,2,2,") and f"{sum(accuracies) / 2:.4f} ± " in seeds
    assert "Sweep summary" in result.stdout

    compared = run_python("-m", "cnnlab.compare", str(tmp_path), "--out", str(tmp_path / "curves.png"))
    assert "| pool | seed |" in compared.stdout and (tmp_path / "curves.png").stat().st_size > 1000


def test_a_failing_job_does_not_end_the_sweep(tmp_path):
    """The first job's config error is one line; the next job still runs, the summary lists the
    failure with its error, and the sweep's exit status says that a job failed."""
    result = train("-m", *QUIET, "trainer.max_epochs=many,1", f"hydra.sweep.dir={tmp_path}", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Error: config key trainer.max_epochs: got 'many'" in result.stderr and "Traceback" not in result.stderr
    assert "job 0_trainer.max_epochs=many failed" in result.stderr
    assert (tmp_path / "1_trainer.max_epochs=1" / "metrics.json").is_file()
    summary = (tmp_path / "summary.md").read_text()
    assert "| 1 | " in summary and "1_trainer.max_epochs=1 |" in summary
    assert "Failed jobs (1):" in summary and "| 0_trainer.max_epochs=many | config key trainer.max_epochs:" in summary


def test_a_sweep_run_again_keeps_finished_jobs_continues_stopped_reruns_failed_and_adds_new(tmp_path):
    """The same -m command again with hydra.sweep.dir= its directory and a longer seed list: the
    finished job is kept as it was, the stopped one continues from its checkpoint, the failed one
    runs again, the new seed runs in a new directory, and the summary says which was which."""
    sweep = [*QUIET, "trainer.max_epochs=2", f"hydra.sweep.dir={tmp_path}"]
    train("-m", *sweep, "seed=0,1,2")
    kept, failed, stopped = (tmp_path / f"{n}_seed={n}" for n in range(3))
    kept_metrics = (kept / "metrics.json").read_text()
    (failed / "metrics.json").unlink()
    shutil.rmtree(failed / "checkpoints")
    (failed / "error.txt").write_text("RuntimeError: out of memory\n")
    (stopped / "metrics.json").unlink()
    for newest in ("last.pt", "step-00000006.pt"):  # stopped in epoch 2: its newest checkpoint, epoch 1's end
        (stopped / "checkpoints" / newest).unlink()
    train("-m", *sweep, "seed=0,1,2,3")
    assert (kept / "metrics.json").read_text() == kept_metrics  # not run again
    assert json.loads((failed / "metrics.json").read_text())["history"] and not (failed / "error.txt").exists()
    assert (
        "Resumed from" in (stopped / "train.log").read_text()
        and "at epoch 1, batch 0, step 3" in (stopped / "train.log").read_text()
    )
    assert json.loads((stopped / "metrics.json").read_text())["history"][-1]["epoch"] == 2
    assert (tmp_path / "3_seed=3" / "metrics.json").is_file()
    summary = (tmp_path / "summary.md").read_text()
    assert "- kept (had finished): 0_seed=0\n- continued (had stopped): 2_seed=2\n" in summary
    assert "- run again (had failed): 1_seed=1\n- new: 3_seed=3" in summary
    assert "Failed jobs" not in summary and len(find_runs([tmp_path])) == 4


def test_two_runs_started_together_get_two_run_directories(tmp_path):
    """The default run directory goes through ``${cnnlab.unique_dir:...}``; two launches at the
    same moment (given the same path here, so that the same second is not left to chance) each
    create their own directory."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True)
    assert OmegaConf.to_container(cfg.hydra.run)["dir"].startswith("${cnnlab.unique_dir:outputs/${now:")
    command = [sys.executable, "train.py", *QUIET, "trainer.max_steps=1",
               "hydra.run.dir=${cnnlab.unique_dir:" + str(tmp_path / "run") + "}"]  # fmt: skip
    launches = [subprocess.Popen(command, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for _ in range(2)]  # fmt: skip
    outputs = [launch.communicate(timeout=300)[0] for launch in launches]
    assert [launch.returncode for launch in launches] == [0, 0], outputs
    directories = sorted(line.split(": ", 1)[1] for out in outputs for line in out.splitlines()
                         if line.startswith("run directory: "))  # fmt: skip
    assert directories == [str(tmp_path / "run"), str(tmp_path / "run_1")]
    assert all((Path(d) / "metrics.json").is_file() for d in directories)


def test_two_sweeps_started_together_get_two_directories_and_their_jobs_stay_in_them(tmp_path, monkeypatch):
    """The default sweep directory goes through ``${cnnlab.unique_dir:...}`` too: a second sweep in
    the same second gets ``_1``. The answer is cached in the config, as ``${now:...}``'s is, so a job
    that a launcher starts in another process (submitit pickles the config; Hydra copies the cache
    into the job's config) writes into its sweep's directory, not into a new ``_2``."""
    import pickle

    from cnnlab.train.runs import directories

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True)
    assert OmegaConf.to_container(cfg.hydra.sweep)["dir"].startswith("${cnnlab.unique_dir:outputs/multirun/${now:")
    directories.register_resolvers()
    monkeypatch.setattr(directories, "_CREATED", {})
    spec = {"hydra": {"sweep": {"dir": "${cnnlab.unique_dir:" + str(tmp_path / "sweep") + "}"}}}
    sweeps = [OmegaConf.create(spec) for _ in range(2)]
    assert sweeps[0].hydra.sweep.dir == str(tmp_path / "sweep")
    monkeypatch.setattr(directories, "_CREATED", {})  # the second sweep: another process
    assert sweeps[1].hydra.sweep.dir == str(tmp_path / "sweep_1")
    monkeypatch.setattr(directories, "_CREATED", {})  # the first sweep's job, in a process of its own
    job = OmegaConf.create(spec)
    OmegaConf.copy_cache(from_config=pickle.loads(pickle.dumps(sweeps[0])), to_config=job)
    assert job.hydra.sweep.dir == str(tmp_path / "sweep")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep", "sweep_1"]


def test_hparams_search_with_optuna(tmp_path):
    train("hparams_search=optuna", "hydra.sweeper.n_trials=2", *QUIET, "trainer.max_epochs=1",
          f"hydra.sweep.dir={tmp_path}")  # fmt: skip
    jobs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert len(jobs) == 2 and all("optimizer.lr=" in j and "pool=" in j and "max_epochs" not in j for j in jobs)
    results = (tmp_path / "optimization_results.yaml").read_text()
    best = max(json.loads((tmp_path / j / "metrics.json").read_text())["val_acc"] for j in jobs)
    assert f"best_value: {best}" in results
    assert (tmp_path / "summary.md").is_file()


def test_an_optuna_search_in_storage_continues_from_where_it_stopped(tmp_path):
    """Stopped after 2 trials, the same command with the same storage continues with trial 2,
    at a point of its own (the sampler is seeded per trial), and reports the best of all three."""
    optuna = pytest.importorskip("optuna")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    for trials, sweep in ((2, "first"), (1, "second")):
        train("hparams_search=optuna", f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.storage={storage}",
              *QUIET, "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path / sweep}")  # fmt: skip
    study = optuna.load_study(study_name="cnnlab", storage=storage)
    assert [(t.number, t.state.name) for t in study.trials] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert study.trials[2].params not in [t.params for t in study.trials[:2]]
    assert f"best_value: {study.best_value}" in (tmp_path / "second" / "optimization_results.yaml").read_text()


# ---- 5. console, logs, config errors


def test_logger_none_writes_no_events_and_offers_no_tensorboard_command(tmp_path):
    result = train(*QUIET, "trainer.max_steps=1", "logger=none", f"hydra.run.dir={tmp_path}")
    assert not list(tmp_path.glob("events.out.tfevents*")) and (tmp_path / "metrics.json").is_file()
    assert result.stdout.strip().splitlines()[-1] == f"run directory: {tmp_path}"
    assert "tensorboard --logdir" not in result.stdout


def test_console_summary_log_file_and_one_evaluation_per_epoch(tmp_path, monkeypatch):
    result = train(*FAST, "model=simple", "trainer.max_epochs=2", f"hydra.run.dir={tmp_path}")
    log = (tmp_path / "train.log").read_text()
    assert "epoch 2/2" in log and "model.layers.7" in log
    tail = result.stdout.strip().splitlines()[-5:]
    assert tail[0].startswith("Finished: 2 epochs, 6 steps")
    assert "of it analysing the trained model (logger.analysis=false skips that)" in tail[0]
    # the run's length, from its own steps: after the first epoch, and once steps 2–4 are timed
    assert re.search(r"About [\d.]+ s for the 3 steps to go on this machine \(epoch 1 measured", result.stdout)
    assert re.search(r"About [\d.]+ s for the 2 steps to go on this machine \([\d.]+ s a step", result.stdout)
    assert tail[1].startswith("val_acc ") and "(best " in tail[1]
    # run_wall_s is the whole run, the analysis included, and its parts add up to it
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    parts = metrics["run_parts_s"]
    assert parts["analysis"] > 0 and parts["training"] == metrics["wall_s"] and parts["other"] > 0
    assert abs(sum(parts.values()) - metrics["run_wall_s"]) < 1e-6
    # what exactly ran: in the run directory, metrics.json and the checkpoints alike
    record = json.loads((tmp_path / "run_record.json").read_text())
    assert metrics["record"] == record and record["seed"] == 0
    assert record["command"].endswith(f"hydra.run.dir={tmp_path}")
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["record"] == record
    assert tail[2].startswith("A shortened run (trainer.limit_train_batches=3): 6 steps")  # (simple: no BatchNorm)
    assert tail[3] == f"run directory: {tmp_path}" and tail[4] == f"TensorBoard:   tensorboard --logdir {tmp_path}"
    assert result.stdout.index("Analysing the trained model") < result.stdout.index("Finished:")

    # in-process: the test set is evaluated once per epoch, not again after the last one
    import cnnlab.train.engine.loop as loop
    import cnnlab.train.engine.state as state

    calls = []
    evaluate = state.evaluate  # what Run.evaluate calls: every evaluation pass of a run
    monkeypatch.setattr(state, "evaluate", lambda *a, **k: calls.append(1) or evaluate(*a, **k))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*QUIET, "trainer.max_epochs=2", f"paths.output_dir={tmp_path}/i"])
    metrics = loop.run(cfg)
    assert len(calls) == 2 and metrics["val_acc"] == metrics["history"][-1]["val_acc"]


def test_augmentations_and_accumulation_train_and_show_in_hparams(tmp_path):
    """Cutout, a torchvision policy, MixUp + CutMix and gradient accumulation in one run: it trains,
    and each option is an HParams column (set on the command line: under its key)."""
    options = ["data.augment.cutout=8", "data.augment.policy=trivialaugment", "data.augment.mixup=0.8",
               "data.augment.cutmix=1.0", "trainer.accumulate_grad_batches=2"]  # fmt: skip
    result = train(*QUIET, "trainer.max_epochs=1", *options, f"hydra.run.dir={tmp_path}")
    assert "epoch 1/1" in result.stdout
    names = {info.name for info in hparams_experiment(tmp_path).experiment.hparam_infos}
    assert {option.split("=")[0] for option in options} <= names


def test_short_resumed_and_evaluated_runs_say_what_their_numbers_are(tmp_path):
    """A 3-step run of a BatchNorm model says its running statistics still hold 0.9³ = 73% of their
    initial values where its evaluation is far off its training loss (and only there); a resumed
    run says which time is whose; an evaluation says where it wrote."""
    run_dir = tmp_path / "run"
    short = train(*FAST, "model=fast", "logger.analysis=false", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    far_off = metrics["val_loss"] > 2 * metrics["train_loss"]  # the warning only where evaluation shows it
    assert far_off == (
        "BatchNorm's running statistics (momentum 0.1), which evaluation uses, still hold 73% of "
        "their initial mean 0 / variance 1 after 3 steps; 29 steps bring it under 5%" in short.stdout
    )
    assert far_off == (f"val_loss {metrics['val_loss']:.4g} against train_loss {metrics['train_loss']:.4g}"
                       in short.stdout)  # fmt: skip
    resumed = train("resume=auto", "trainer.max_epochs=2", "allow_config_change=true", f"hydra.run.dir={run_dir}")
    finished = next(line for line in resumed.stdout.splitlines() if line.startswith("Finished:"))
    assert finished.startswith("Finished: 2 epochs, 6 steps") and "(resumed at step 3: this process ran " in finished
    evaluated = train("trainer.eval_only=true", f"ckpt_path={run_dir / 'checkpoints' / 'last.pt'}",
                      f"hydra.run.dir={tmp_path / 'eval'}")  # fmt: skip
    assert f"written to {tmp_path / 'eval' / 'metrics.json'}" in evaluated.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+trainer.max_epoch=1", "config key trainer.max_epoch: unknown key (nothing reads it); did you mean "
                                 "trainer.max_epochs?"),
        ("+logger.analyse=false", "config key logger.analyse: unknown key"),
        ("+learning_rate=0.1", "config key learning_rate: unknown key"),
        ("trainer.max_epochs=many", "config key trainer.max_epochs: got 'many', expected a positive number"),
        # every group's keys: those its kind or its _target_ reads
        ("+model.widht=0.5", "config key model.widht: unknown key (nothing reads it); did you mean model.width?"),
        ("+conv.algoritm=gemm", "config key conv.algoritm: unknown key (nothing reads it); did you mean "
                                "conv.algorithm?"),
        ("+pool.sigm=0.5", "config key pool.sigm: unknown key (nothing reads it). Known keys of pool: ['kind']"),
        ("+pool.count_include_pad=false", "config key pool.count_include_pad: unknown key"),
        ("+optimizer.momentun=0.9", "config key optimizer.momentun: unknown key (nothing reads it); did you mean "
                                    "optimizer.momentum?"),
        ("+scheduler.warmup=0.1", "config key scheduler.warmup: unknown key (nothing reads it); did you mean "
                                  "scheduler.warmup_fraction?"),
        ("callbacks=ema +callbacks.ema.decy=0.9", "config key callbacks.ema.decy: unknown key (nothing reads it); "
                                                  "did you mean callbacks.ema.decay?"),
        ("optimizer._target_=torch.optim.SDG", "config key optimizer._target_: cannot use 'torch.optim.SDG'"),
        ("data.augment.policy=autoaugmnt", "config key data.augment.policy: got 'autoaugmnt', expected one of "
                                           "['none', 'trivialaugment', 'randaugment', 'autoaugment']"),
        ("trainer.accumulate_grad_batches=0", "config key trainer.accumulate_grad_batches: got 0, expected a "
                                              "positive int up to data.batch_size (64)"),
        pytest.param("trainer.device=cuda", "config key trainer.device: got 'cuda', but torch.cuda.is_available() "
                     "is False", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without "
                                                                                            "CUDA")),
    ],
)  # fmt: skip
def test_config_errors_name_the_key_and_what_it_takes(tmp_path, override, message):
    """In-process (what ``train.py`` runs inside Hydra): the error names the key; the next test
    shows how ``train.py`` reports such an error."""
    import cnnlab.train.engine.loop as loop
    from cnnlab.errors import UserError

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*FAST, *override.split(), f"paths.output_dir={tmp_path}"])
    with pytest.raises(UserError) as error:
        loop.run(cfg)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "override", ["+model.widht=0.5", "trainer.max_epochs=many", "optimizer._target_=torch.optim.SDG"]
)
def test_config_errors_are_one_line_and_leave_no_run_directory(tmp_path, override):
    """On the command line: an unknown key, a bad value, an unusable ``_target_``."""
    result = train(*FAST, override, f"hydra.run.dir={tmp_path / 'run'}", check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1
    assert lines[0].startswith(f"Error: config key {override.lstrip('+').split('=')[0]}: ")
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["model=resnet19"], "model=resnet19: configs/model/ has no resnet19.yaml; did you mean resnet9 or resnet18?"),
        (["pool=maxx"], "pool=maxx: configs/pool/ has no maxx.yaml; did you mean max or maxout?"),
        (["-m", "conv=standard,torchh"], "conv=torchh: configs/conv/ has no torchh.yaml; did you mean torch?"),
        (["experiment=cpu95"], "experiment=cpu95: configs/experiment/ has no cpu95.yaml; did you mean cpu94"),
        # a key its group does not have: not Hydra's advice to add it with +, but where it lives
        (
            ["conv=standard", "conv.kernel_size=4"],
            "conv.kernel_size: no conv= option has kernel_size (its keys: algorithm, dilation,",
        ),
        (["optimizer.lrr=0.1"], "optimizer.lrr: no optimizer= option has lrr"),
    ],
)
def test_a_misspelled_group_choice_is_one_line_with_the_closest_options(tmp_path, arguments, message):
    """Not Hydra's 24-line message and exit 1: cnnlab's one ``Error:`` line, exit 2, nothing run
    (a misspelled option of a group, or a key no option of the group has)."""
    result = train(*arguments, f"hydra.run.dir={tmp_path / 'run'}", check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"Error: {message}"), result.stderr
    assert ("(options: " in lines[0] or "(its keys: " in lines[0]) and not (tmp_path / "run").exists()
    if "conv.kernel_size" in message:
        assert lines[0].endswith("a layer's own settings are model.layers.<N>.conv.kernel_size (the shape table, "
                                 "python -m cnnlab.analyze, lists the paths)")  # fmt: skip
    if "lrr" in message:
        assert "did you mean optimizer.lr?" in lines[0]


def test_known_keys_match_the_config_files():
    """Every key the YAML files define is known to the validation (and nothing else is)."""
    from omegaconf import OmegaConf

    trainer = OmegaConf.load(ROOT / "configs" / "trainer" / "default.yaml")
    logger = OmegaConf.load(ROOT / "configs" / "logger" / "tensorboard.yaml")
    paths = OmegaConf.load(ROOT / "configs" / "paths" / "default.yaml")
    data = set(OmegaConf.load(ROOT / "configs" / "data" / "cifar10.yaml")) | set(
        OmegaConf.load(ROOT / "configs" / "data" / "synthetic.yaml")
    )
    assert set(trainer) == KNOWN_KEYS["trainer"]
    assert set(logger) == KNOWN_KEYS["logger"]
    assert set(paths) == KNOWN_KEYS["paths"]
    assert data == KNOWN_KEYS["data"]
    for file in (ROOT / "configs" / "model").glob("*.yaml"):
        assert set(OmegaConf.load(file)) == KNOWN_KEYS["model"], file.name
    for group, kinds in (("conv", CONVS), ("pool", POOLS)):
        files = [OmegaConf.load(f) for f in (ROOT / "configs" / group).glob("*.yaml")]
        assert {cfg.kind for cfg in files} == set(kinds)  # a file for every kind, and every option in it
        for cfg in files:
            assert set(cfg) == {"kind", *kinds[cfg.kind].options}, (group, cfg.kind)


# ---- 6. helper CLIs, layer paths, debug runs


def test_import_cnnlab_offers_onnx_and_analyze_without_the_train_extra_says_what_to_install():
    """``import cnnlab`` makes ``cnnlab.onnx`` available as torchvision does its submodules; with only
    the layers installed (hydra missing), ``python -m cnnlab.analyze`` is one line naming the extra."""
    onnx = subprocess.run([sys.executable, "-c", "import cnnlab; print(hasattr(cnnlab, 'onnx'))"], cwd=ROOT,
                          capture_output=True, text=True, env=clean_env())  # fmt: skip
    assert onnx.stdout.strip() == "True", onnx.stderr
    script = "import runpy, sys; sys.modules['hydra'] = None; runpy.run_module('cnnlab.analyze', run_name='__main__')"
    result = subprocess.run([sys.executable, "-c", script, "--help"], cwd=ROOT, capture_output=True, text=True,
                            env=clean_env())  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "pip install 'cnnlab[train]'" in lines[0], result.stderr


def test_helper_clis_explain_themselves_and_write_outside_the_repository(trained_run, tmp_path):
    assert "python -m cnnlab.analyze" in run_python("-m", "cnnlab.analyze", "--help").stdout
    usage = run_python("docs/figures.py", check=False)
    assert (
        usage.returncode == 2 and "usage: python docs/figures.py" in usage.stderr and "IndexError" not in usage.stderr
    )
    images = ROOT / "docs" / "site" / "images"
    before = {p.name: p.stat().st_mtime_ns for p in images.iterdir()}
    run_python("docs/figures.py", str(trained_run), "--out", str(tmp_path / "figures"))
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {"receptive_field.png", "feature_maps.png"}
    assert {p.name: p.stat().st_mtime_ns for p in images.iterdir()} == before


def test_layer_paths_in_the_shape_table_are_overrides():
    table = run_python("-m", "cnnlab.analyze", "model=simple").stdout
    path = next(line.split()[0] for line in table.splitlines() if line.split()[1:2] == ["conv:"])  # conv: Conv2d
    assert path == "model.layers.0"
    changed = run_python("-m", "cnnlab.analyze", "model=simple", f"{path}.conv.out_channels=48").stdout
    assert "(48, 32, 32)" in changed and "(32, 32, 32)" not in changed
    # inside a residual block too (the body's first conv; the block's projection follows it)
    table = run_python("-m", "cnnlab.analyze", "model=resnet").stdout
    inner = next(word for line in table.splitlines() for word in line.split()[:1] if ".residual." in word)
    assert inner == "model.layers.3.residual.0"
    changed = run_python("-m", "cnnlab.analyze", "model=resnet", f"{inner}.conv.out_channels=48").stdout
    assert any(line.startswith(inner) and "(48, 32, 32)" in line for line in changed.splitlines())


def test_debug_runs_stay_sane(tmp_path):
    """A recipe's lr 0.2 and warm-up squeezed into five steps diverged (val_loss 254 on CIFAR);
    debug=fdr runs one step at a small constant lr."""
    result = train("experiment=cifar_fast", "data=synthetic", "debug=fdr", f"hydra.run.dir={tmp_path}")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 1 and metrics["val_loss"] < 5
    assert "analysis" not in metrics and "Analysing" not in result.stdout


def test_overfit_batches_fit(tmp_path):
    train("debug=overfit", "data=synthetic", "trainer.max_epochs=10", "trainer.overfit_batches=1",
          "trainer.limit_val_batches=1", "logger.analysis=false", "trainer.progress_bar=false",
          f"hydra.run.dir={tmp_path}")  # fmt: skip
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]


# ---- the loop's stages: a callback adds a stage and resumes exactly


def test_ema_callback_adds_a_metric_and_resumes_exactly(tmp_path):
    common = [*QUIET, "callbacks=ema", "scheduler=constant", "trainer.deterministic=true"]
    train(*common, "trainer.max_epochs=2", f"hydra.run.dir={tmp_path / 'straight'}")
    train(*common, "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'cut'}")
    train("resume=auto", "trainer.max_epochs=2", "allow_config_change=true", f"hydra.run.dir={tmp_path / 'cut'}")
    straight, cut = (
        torch.load(tmp_path / r / "checkpoints" / "last.pt", weights_only=True) for r in ("straight", "cut")
    )
    average = straight["callbacks"]["ema"]["average"]  # saved under its name in configs/callbacks/ema.yaml
    assert average.keys() == cut["callbacks"]["ema"]["average"].keys()
    for name, value in average.items():
        assert torch.equal(value, cut["callbacks"]["ema"]["average"][name]), name
    assert not torch.equal(average["0.weight"], straight["model"]["0.weight"])  # it is an average, not a copy
    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert "val_ema_acc" in metrics["history"][-1]
    assert "val/ema_acc" in events(tmp_path / "straight").Tags()["scalars"]
