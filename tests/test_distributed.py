"""Data-parallel training (rfwp.train.distributed): two processes under torchrun, each on half the columns of a
token stream, train the model that one process trains on all of them, step for step; ``execute`` under torchrun
writes from the main process only and resumes every process from the main process's checkpoint.

torchrun runs this file as a script (``worker``, gloo on the CPU); the single process runs the same functions
inside pytest. One launch serves every test that needs two processes.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from oracle import Crash, crashing
from rfwp import ModelConfig, build_model
from rfwp.train import ContiguousSegments, OptimiserConfig, Schedule, SequenceTrainer, distributed, execute, runs

ROOT = Path(__file__).resolve().parents[1]
VOCAB, BATCH, SEGMENT, STEPS = 13, 4, 6, 5
TOKENS = torch.randint(VOCAB, (BATCH * 40 + 1,), generator=torch.Generator().manual_seed(0))
VALID = torch.randint(VOCAB, (2 * 12 + 1,), generator=torch.Generator().manual_seed(1))
SCENARIOS = {"plain": dict(carry_state=False, accumulate=1), "carry_state": dict(carry_state=True, accumulate=1),
             "accumulate": dict(carry_state=False, accumulate=2),
             "carry_state_accumulate": dict(carry_state=True, accumulate=2)}


class UnscoredZeros:
    """A stream whose targets 0 are not scored (as padding is not), so the processes score different numbers of
    tokens: a mean of the processes' means would differ from the mean over all their tokens."""

    def __init__(self, stream):
        self.stream = stream

    def next(self):
        batch = self.stream.next()
        return batch._replace(mask=batch.targets != 0)

    def state_dict(self):
        return self.stream.state_dict()

    def load_state_dict(self, state):
        self.stream.load_state_dict(state)


class FinallyEvaluated(SequenceTrainer):
    def final_evaluate(self):
        return {"final_valid_loss": self.evaluate()["valid_loss"]}


def make_trainer(carry_state=False, accumulate=1, dropout=0.0, kind=SequenceTrainer):
    """The same model in every process; this process's columns of the training stream."""
    torch.manual_seed(0)
    model = build_model("delta_net", ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, vocab_size=VOCAB,
                                                 dropout=dropout))
    stream = ContiguousSegments(TOKENS, BATCH, SEGMENT, rank=distributed.rank(), world_size=distributed.world_size())
    return kind(model, OptimiserConfig(lr=1e-2, clip=1.0, accumulate=accumulate), UnscoredZeros(stream),
                {"valid": ContiguousSegments(VALID, 2, SEGMENT)}, carry_state=carry_state)


def train(steps=STEPS, start=None, first=0, **scenario):
    trainer = make_trainer(**scenario)
    if start is not None:
        trainer.load_state_dict(start)
    metrics = [trainer.train_step(step) for step in range(first, first + steps)]
    return {"metrics": metrics, "state": trainer.state_dict()}


@dataclasses.dataclass
class RunConfig:
    dropout: float = 0.1


def _run_trainer(config, seed):
    return make_trainer(carry_state=True, dropout=config.dropout, kind=FinallyEvaluated)


def run_execute(root: Path) -> dict:
    """A run with dropout and carried state trained in one go, and the same run killed after its checkpoint at
    step 3 and resumed."""
    schedule = Schedule(steps=6, eval_every=3, monitor="valid_loss")
    whole = execute("ddp/toy", RunConfig(), _run_trainer, schedule, seed=0, scale="cpu", results_dir=root / "a",
                    cache_dir=root / "ca", progress=False)


    interrupted = dataclasses.replace(schedule, checkpoint_every=3)
    with pytest.raises(Crash):
        execute("ddp/toy", RunConfig(), crashing(_run_trainer, at_step=4), interrupted, seed=0, scale="cpu",
                results_dir=root / "b", cache_dir=root / "cb", progress=False)
    if distributed.is_main():
        shutil.copy(root / "cb/cpu/ddp/toy/seed0.pt", root / "checkpoint_of_two.pt")
    resumed = execute("ddp/toy", RunConfig(), _run_trainer, interrupted, seed=0, scale="cpu",
                      results_dir=root / "b", cache_dir=root / "cb", progress=False)
    return {name: {"history": record.history.drop(columns="wall_time").to_dict(orient="list"),
                   "final": record.final, "best": {k: v for k, v in record.best.items() if k != "wall_time"},
                   "resumed_from": record.resumed_from}
            for name, record in (("whole", whole), ("resumed", resumed))}


def worker(out: Path) -> None:
    """What each torchrun process runs; its results go to out/rank<r>.pt."""
    results = {name: train(**scenario) for name, scenario in SCENARIOS.items()}
    # a single process's checkpoint after 3 steps, continued by the two processes
    results["continued"] = train(steps=2, start=torch.load(out / "single_after_3.pt", weights_only=False), first=3)

    def forbidden(path, write):
        raise AssertionError(f"process {distributed.rank()} wrote {path}: only the main process writes")
    if not distributed.is_main():
        runs.atomic_write = forbidden
    results["execute"] = run_execute(out)
    results["random_after_execute"] = torch.rand(4)
    torch.save(results, out / f"rank{distributed.rank()}.pt")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """The single process's results (in pytest) and the two processes' (one torchrun launch)."""
    out = tmp_path_factory.mktemp("ddp")
    single = {name: train(**scenario) for name, scenario in SCENARIOS.items()}
    torch.save(train(steps=3)["state"], out / "single_after_3.pt")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           __file__, str(out)], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    if done.returncode:
        pytest.fail(f"torchrun failed ({done.returncode}):\n{done.stderr[-5000:]}")
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    return {"single": single, "ranks": ranks, "out": out}


def test_processes_read_their_share_of_the_columns():
    """Process r of W reads rows [r·B/W, (r+1)·B/W) of the single process's batches, segment after segment."""
    whole = ContiguousSegments(TOKENS, BATCH, SEGMENT)
    shares = [ContiguousSegments(TOKENS, BATCH, SEGMENT, rank=r, world_size=2) for r in range(2)]
    for _ in range(9):   # past the end of the stream (40 tokens a row, 7 segments) and back to its start
        batch, parts = whole.next(), [share.next() for share in shares]
        for field in batch._fields:
            assert torch.equal(getattr(batch, field), torch.cat([getattr(p, field) for p in parts]))
    with pytest.raises(ValueError, match="batch_size 3 does not split over 2 processes: use a multiple of 2"):
        ContiguousSegments(TOKENS, 3, SEGMENT, rank=0, world_size=2)
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size\), got rank 2 of world_size 2"):
        ContiguousSegments(TOKENS, BATCH, SEGMENT, rank=2, world_size=2)


def test_rank_and_world_size_come_from_torchruns_environment(monkeypatch):
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank(), distributed.is_main()) == \
        (1, 2, 1, False)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' in the environment is not an integer"):
        distributed.world_size()


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_two_processes_train_as_one_process_with_the_whole_batch(results, scenario):
    """Loss (the mean over every scored token of both processes), token count, gradient norm and learning rate
    at every step, and the weights after the last, equal those of one process reading all columns."""
    targets = TOKENS[1:].view(BATCH, -1)[:, :SEGMENT]
    assert (targets[:2] != 0).sum() != (targets[2:] != 0).sum()   # the processes score different numbers of tokens
    single = results["single"][scenario]
    for rank in results["ranks"]:
        ddp = rank[scenario]
        for step, (a, b) in enumerate(zip(ddp["metrics"], single["metrics"], strict=True)):
            assert a.keys() == b.keys() and a["tokens"] == b["tokens"], step
            assert a == pytest.approx(b, rel=1e-5), step
        for name, weight in single["state"]["model"].items():
            torch.testing.assert_close(ddp["state"]["model"][name], weight, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_checkpoints_cross_between_one_and_two_processes(results):
    """A trainer's state holds the model's own weights (no DDP "module." prefix): a single process's state after
    3 steps continues under two processes as the single process went on, and the two processes' state loads into
    a single-process trainer. A carried state restores only under as many processes as carried it."""
    single, ddp = results["single"]["plain"], results["ranks"][0]
    assert list(ddp["plain"]["state"]["model"]) == list(single["state"]["model"])
    for a, b in zip(ddp["continued"]["metrics"], single["metrics"][3:], strict=True):
        assert a == pytest.approx(b, rel=1e-5)
    trainer = make_trainer()
    trainer.load_state_dict(ddp["plain"]["state"])
    for name, weight in trainer.model.state_dict().items():
        torch.testing.assert_close(weight, single["state"]["model"][name], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"saved by 2 process\(es\), one per share of the columns; it restores "
                                         r"only under 2, not 1"):
        make_trainer(carry_state=True).load_state_dict(ddp["carry_state"]["state"])


@pytest.mark.slow
def test_execute_under_two_processes_writes_once_and_resumes(results, tmp_path):
    """Under torchrun (only the main process may write: the others' atomic_write raises), the run killed after
    its checkpoint and resumed by both processes ends as the run trained in one go, with dropout and carried
    state (each process's RNG and state restored); both processes return the record that was written, with
    final_evaluate's metrics; the processes draw different random numbers; the checkpoint of two processes does
    not resume in one."""
    main, other = (rank["execute"] for rank in results["ranks"])
    assert main["resumed"]["resumed_from"] == 3 and main["whole"]["resumed_from"] is None
    for key in ("history", "final", "best"):
        assert main["resumed"][key] == main["whole"][key]
        assert other["resumed"][key] == main["resumed"][key] and other["whole"][key] == main["whole"][key]
    assert main["whole"]["history"]["step"] == [3, 6]
    assert main["whole"]["final"]["final_valid_loss"] == main["whole"]["final"]["valid_loss"]
    out = results["out"]
    written = runs.RunRecord.load(out / "b/runs/cpu/ddp/toy/seed0.json")
    assert written.history.drop(columns="wall_time").to_dict(orient="list") == main["resumed"]["history"]
    assert written.final == main["resumed"]["final"]
    assert not list(out.glob("c*/**/*.pt")), "the checkpoint of a complete run is deleted"
    assert not torch.equal(*(rank["random_after_execute"] for rank in results["ranks"]))

    cache = tmp_path / "cache/cpu/ddp/toy"
    cache.mkdir(parents=True)
    shutil.copy(out / "checkpoint_of_two.pt", cache / "seed0.pt")
    with pytest.raises(ValueError, match=r"written by 2 process\(es\) and resumes only under as many"):
        execute("ddp/toy", RunConfig(), _run_trainer, Schedule(steps=6, eval_every=3, monitor="valid_loss",
                                                               checkpoint_every=3),
                seed=0, scale="cpu", results_dir=tmp_path, cache_dir=tmp_path / "cache", progress=False)


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
