"""The run record and resume logic of rfwp.runs, on a toy linear-regression trainer (tests/toy_trainer.py)."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rfwp.train import runs
from rfwp.train.runs import RunRecord, Schedule, execute
from toy_trainer import ToyConfig, ToyTrainer

TESTS = Path(__file__).resolve().parent


def run(tmp_path, config=ToyConfig(), schedule=Schedule(steps=40, eval_every=10), seed=0, scale="cpu", tag=""):
    return execute("toy/regression", config, ToyTrainer, schedule, seed=seed, scale=scale,
                   results_dir=tmp_path / f"results{tag}", cache_dir=tmp_path / f"cache{tag}", progress=False)


def numbers(record: RunRecord):
    """Everything a run computed, without its timings."""
    return record.history.drop(columns="wall_time").to_dict(orient="list"), record.final


@pytest.fixture(autouse=True)
def count_calls():
    ToyTrainer.calls = 0


def test_record_is_written_and_reused(tmp_path):
    first = run(tmp_path)
    path = tmp_path / "results/runs/cpu/toy/regression/seed0.json"
    assert first.path == path and path.exists()
    assert ToyTrainer.calls == 40
    loaded = RunRecord.load(path)
    assert loaded.status == "complete" and loaded.steps_done == 40 and loaded.stopped == "steps"
    assert list(loaded.history["step"]) == [10, 20, 30, 40]
    assert {"loss", "neg_loss", "train_loss"} <= set(loaded.history.columns)
    assert loaded.final == first.final and loaded.final["loss"] == loaded.history["loss"].iloc[-1]
    assert loaded.best["loss"] == loaded.history["loss"].min()
    assert loaded.config == dataclasses.asdict(ToyConfig()) and loaded.versions["torch"]
    assert not list((tmp_path / "cache").rglob("*.pt")), "the checkpoint of a complete run is deleted"

    again = run(tmp_path)
    assert ToyTrainer.calls == 40, "a complete record with the same config is returned without training"
    assert numbers(again) == numbers(first)


def test_config_or_schedule_change_reruns(tmp_path):
    first = run(tmp_path)
    changed = run(tmp_path, config=ToyConfig(lr=0.02))
    assert ToyTrainer.calls == 80
    assert changed.config_hash != first.config_hash
    assert RunRecord.load(changed.path).config["lr"] == 0.02
    run(tmp_path, config=ToyConfig(lr=0.02), schedule=Schedule(steps=50, eval_every=10))
    assert ToyTrainer.calls == 130


def test_smoke_runs_never_write_committed_results(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "REPO_ROOT", tmp_path)
    record = execute("toy/regression", ToyConfig(), ToyTrainer, Schedule(steps=10, eval_every=5),
                     seed=0, scale="smoke", progress=False)
    assert record.path == tmp_path / "results/smoke/runs/smoke/toy/regression/seed0.json"
    written = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()]
    assert written == ["results/smoke/runs/smoke/toy/regression/seed0.json"]
    assert runs.record_path("x", 0, "cpu") == tmp_path / "results/runs/cpu/x/seed0.json"


def test_same_seed_same_numbers(tmp_path):
    a = run(tmp_path, tag="a")
    b = run(tmp_path, tag="b")
    c = run(tmp_path, seed=1, tag="c")
    assert numbers(a) == numbers(b)
    assert numbers(a) != numbers(c)


class Scripted:
    """A trainer whose evaluations return a fixed sequence of losses."""
    def __init__(self, losses):
        self.losses = iter(losses)

    def train_step(self, step):
        return {"loss": 0.0}

    def evaluate(self):
        return {"loss": next(self.losses)}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@dataclasses.dataclass
class ScriptedConfig:
    losses: tuple


@pytest.mark.parametrize("schedule, stopped, steps_done, best", [
    (Schedule(steps=80, eval_every=10), "steps", 80, 2.0),
    (Schedule(steps=80, eval_every=10, patience=2), "patience", 50, 3.0),
    (Schedule(steps=80, eval_every=10, target=3.0), "target", 30, 3.0),
    (Schedule(steps=80, eval_every=10, monitor="loss", mode="max"), "steps", 80, 9.0),
])
def test_early_stopping(tmp_path, schedule, stopped, steps_done, best):
    config = ScriptedConfig(losses=(9.0, 5.0, 3.0, 4.0, 3.5, 2.0, 2.5, 2.2))
    record = execute("toy/scripted", config, lambda c, seed: Scripted(c.losses), schedule, seed=0, scale="cpu",
                     results_dir=tmp_path, cache_dir=tmp_path / "cache", progress=False)
    assert (record.stopped, record.steps_done, record.best["loss"]) == (stopped, steps_done, best)
    assert record.final["loss"] == config.losses[steps_done // 10 - 1]


class Counting(Scripted):
    """Reports 7 tokens and 3 frames a step, like a token task or an environment would."""

    def train_step(self, step):
        return {**super().train_step(step), "tokens": 7, "frames": 3}


@pytest.mark.parametrize("budget, stopped, steps_done", [
    ({"tokens": 7 * 25}, "tokens", 25), ({"frames": 3 * 40}, "frames", 40),
    ({"steps": 33, "tokens": 10**6}, "steps", 33), ({"steps": 33, "frames": 3 * 12}, "frames", 12)])
def test_budget_in_tokens_or_frames(tmp_path, budget, stopped, steps_done):
    """The first budget spent ends the run, with an evaluation at its last step; the history counts them."""
    config = ScriptedConfig(losses=(9.0, 5.0, 3.0, 4.0, 3.5, 2.0, 2.5, 2.2))
    record = execute("toy/budget", config, lambda c, seed: Counting(c.losses), Schedule(eval_every=10, **budget),
                     seed=0, scale="cpu", results_dir=tmp_path, cache_dir=tmp_path / "cache", progress=False)
    assert (record.stopped, record.steps_done) == (stopped, steps_done)
    assert list(record.history.step) == [*range(10, steps_done, 10), steps_done]
    assert list(record.history.tokens) == [7 * s for s in record.history.step]
    assert list(record.history.frames) == [3 * s for s in record.history.step]
    assert "tokens" not in record.final and "train_tokens" not in record.history


def test_train_false_only_reads_a_complete_record(tmp_path):
    where = dict(seed=0, scale="cpu", results_dir=tmp_path, cache_dir=tmp_path / "cache", progress=False)
    schedule = Schedule(steps=10, eval_every=5)
    assert execute("toy/regression", ToyConfig(), ToyTrainer, schedule, train=False, **where) is None
    assert not list(tmp_path.rglob("*.json"))
    trained = execute("toy/regression", ToyConfig(), ToyTrainer, schedule, **where)
    calls = ToyTrainer.calls
    read = execute("toy/regression", ToyConfig(), ToyTrainer, schedule, train=False, **where)
    assert ToyTrainer.calls == calls and read.final == trained.final


def test_nan_is_never_best(tmp_path):
    config = ScriptedConfig(losses=(float("nan"), 4.0, float("nan"), 5.0))
    record = execute("toy/nan", config, lambda c, seed: Scripted(c.losses), Schedule(steps=40, eval_every=10),
                     seed=0, scale="cpu", results_dir=tmp_path, cache_dir=tmp_path / "cache", progress=False)
    assert record.best["loss"] == 4.0 and record.best["step"] == 20
    assert RunRecord.load(record.path).history["loss"].isna().sum() == 2   # recorded as NaN, read back as NaN


def test_bad_input_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        run(tmp_path, scale="gpu")
    with pytest.raises(ValueError, match="run name"):
        execute("../escape", ToyConfig(), ToyTrainer, Schedule(steps=1, eval_every=1), seed=0, scale="cpu",
                results_dir=tmp_path, progress=False)
    with pytest.raises(KeyError, match="accuracy"):
        run(tmp_path, schedule=Schedule(steps=10, eval_every=5, monitor="accuracy"))
    with pytest.raises(ValueError, match="needs a budget"):
        Schedule(eval_every=5)


# A subprocess that trains slowly enough to be killed between checkpoints.
CHILD = """
from pathlib import Path
from rfwp.train.runs import Schedule, execute
from toy_trainer import ToyConfig, ToyTrainer
execute("toy/regression", ToyConfig(sleep=0.02), ToyTrainer, Schedule(steps=60, eval_every=10, checkpoint_every=7),
        seed=3, scale="cpu", results_dir=Path({results!r}), cache_dir=Path({cache!r}), progress=False)
"""


def test_killed_run_resumes_from_checkpoint_with_identical_results(tmp_path):
    config, schedule = ToyConfig(sleep=0.02), Schedule(steps=60, eval_every=10, checkpoint_every=7)
    results, cache = tmp_path / "results", tmp_path / "cache"
    checkpoint = cache / "cpu/toy/regression/seed3.pt"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(results=str(results), cache=str(cache))],
                             env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)})
    deadline = time.monotonic() + 60
    while not checkpoint.exists():
        assert child.poll() is None, "the child finished or crashed before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (results / "runs/cpu/toy/regression/seed3.json").exists()

    resumed = execute("toy/regression", config, ToyTrainer, schedule, seed=3, scale="cpu",
                      results_dir=results, cache_dir=cache, progress=False)
    assert resumed.resumed_from is not None and resumed.resumed_from > 0 and resumed.resumed_from % 7 == 0
    assert ToyTrainer.calls == 60 - resumed.resumed_from, "the resumed run did not restart from step 0"
    assert not checkpoint.exists()

    uninterrupted = execute("toy/regression", config, ToyTrainer, schedule, seed=3, scale="cpu",
                            results_dir=tmp_path / "results2", cache_dir=tmp_path / "cache2", progress=False)
    assert uninterrupted.resumed_from is None
    assert numbers(resumed) == numbers(uninterrupted)
