"""Runs: a named config trained under a schedule, recorded as JSON under ``results/runs/``.

    record = execute("background/capacity/linear_S100", config, make_trainer, Schedule(steps=..., eval_every=...),
                     seed=0, scale="cpu")
    record.final["loss"], record.best, record.history   # history: one DataFrame row per evaluation

The record lives at ``<results_dir>/runs/<scale>/<name>/seed<seed>.json`` and is committed. A complete
record with the same config hash is returned without training; a killed run resumes from its latest
checkpoint in ``.cache/rfwp/checkpoints`` (git-ignored) and ends with the same numbers as an uninterrupted
one, because the checkpoint holds everything the next step depends on: the trainer's state (model,
optimiser, data generator, data position), the global torch RNG and the loop's own bookkeeping.

Under torchrun (``rfwp.train.distributed``) every process runs the same loop; the main process alone writes the
checkpoints and the record, and a killed run resumes under as many processes as wrote its checkpoint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import pandas as pd
import torch
from tqdm.auto import tqdm

from rfwp.io import atomic_write
from rfwp.train import distributed

SCALES = ("smoke", "cpu", "paper")
# Seeds a notebook uses when its ``seeds`` parameter is None.
DEFAULT_SEEDS = {"smoke": (0,), "cpu": (0, 1, 2), "paper": (0, 1, 2)}


def _project_root() -> Path:
    """The checkout the package runs from (a pyproject.toml beside it), else the working directory: a
    non-editable install keeps its results and checkpoints where its user runs it, not in site-packages."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


REPO_ROOT = _project_root()
_NAME = re.compile(r"[A-Za-z0-9_.=+-]+(/[A-Za-z0-9_.=+-]+)*")


class Trainer(Protocol):
    """One training run of a task. Everything needed to resume bit-for-bit is in state_dict():
    model, optimiser, RNG states (torch.Generator of the data, the global torch RNG), data position.
    (``execute`` also saves and restores the global torch RNG itself.) Under torchrun every process calls each
    method, so a trainer may communicate between processes in any of them (state_dict gathering what differs
    per process, for one). A trainer may also have ``final_evaluate() -> dict[str, float | str]``, see ``execute``."""

    def train_step(self, step: int) -> dict[str, float]: ...      # one optimiser step; returns e.g. {"loss": ...}

    def evaluate(self) -> dict[str, float]: ...                    # e.g. {"loss": ..., "accuracy": ...}

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


BUDGETS = ("steps", "tokens", "frames")


@dataclass
class Schedule:
    """When a run evaluates and stops. The budget is optimiser steps, training tokens or environment frames
    (the counts a trainer reports as ``tokens`` / ``frames`` from ``train_step``); the first one reached ends
    the run. Evaluations and checkpoints are counted in optimiser steps."""
    steps: int | None = None              # budget: optimiser steps
    eval_every: int = 100                 # optimiser steps between evaluations
    tokens: int | None = None             # budget: training tokens (train_step returns {"tokens": n, ...})
    frames: int | None = None             # budget: environment frames (train_step returns {"frames": n, ...})
    checkpoint_every: int | None = None   # default: eval_every
    monitor: str = "loss"         # metric of evaluate() used for early stopping and "best"
    mode: str = "min"             # "min" or "max"
    patience: int | None = None   # stop after this many evaluations without improvement
    target: float | None = None   # stop once the monitored metric reaches this value

    def __post_init__(self):
        if all(getattr(self, unit) is None for unit in BUDGETS):
            raise ValueError("a Schedule needs a budget: steps=, tokens= or frames=")
        counts = [getattr(self, unit) for unit in BUDGETS] + [self.eval_every, self.checkpoint_every]
        if any(n is not None and n < 1 for n in counts):
            raise ValueError(f"budgets, eval_every and checkpoint_every must be positive integers, got {self}")
        if self.mode not in ("min", "max"):
            raise ValueError(f"Schedule.mode must be 'min' or 'max', got {self.mode!r}")

    def spent(self, done: dict[str, int]) -> bool:
        """Whether the counts done (steps, tokens, frames) have reached any budget."""
        return any(getattr(self, unit) is not None and done[unit] >= getattr(self, unit) for unit in BUDGETS)

    def better(self, a: float, b: float | None) -> bool:
        """Whether metric value ``a`` improves on ``b`` (None: nothing to improve on yet; NaN: any number does)."""
        if b is None or (math.isnan(b) and not math.isnan(a)):
            return True
        return a < b if self.mode == "min" else a > b

    def reached(self, value: float) -> bool:
        return self.target is not None and (value <= self.target if self.mode == "min" else value >= self.target)


@dataclass
class RunRecord:
    """What a run leaves behind. ``history`` has one row per evaluation: step, the tokens and frames trained
    on so far (where the trainer counts them), wall_time (seconds since the start of training, summed over
    resumptions), the evaluation metrics under their own names and the
    training metrics averaged over the preceding interval as ``train_<name>``."""
    name: str
    config: dict
    config_hash: str
    seed: int
    scale: str
    schedule: dict
    history: pd.DataFrame
    final: dict[str, float | str]  # metrics of the last evaluation, and final_evaluate()'s
    best: dict[str, float]        # the evaluation row (with its step) that is best in schedule.monitor
    steps_done: int
    stopped: str                  # the budget spent ("steps", "tokens", "frames"), "patience" or "target"
    wall_time: float
    resumed_from: int | None      # the step a checkpoint restored, None for a run trained in one go
    versions: dict[str, str]
    status: str = "complete"
    path: Path | None = field(default=None, compare=False)

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "path"}
        out["history"] = self.history.to_dict(orient="records")
        return out

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        path = Path(path)
        data = json.loads(path.read_text())
        data["history"] = pd.DataFrame(data["history"])
        return cls(**data, path=path)


def default_results_dir(scale: str) -> Path:
    """``results/`` for cpu and paper; ``results/smoke/`` (git-ignored) so smoke runs never touch committed results."""
    check_scale(scale)
    return REPO_ROOT / "results" / "smoke" if scale == "smoke" else REPO_ROOT / "results"


def check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")


def record_path(name: str, seed: int, scale: str, results_dir: Path | None = None) -> Path:
    check_scale(scale)
    if not _NAME.fullmatch(name) or any(part in (".", "..") for part in name.split("/")):
        raise ValueError(f"run name {name!r} must be '/'-separated parts of letters, digits and _.=+- "
                         f"(e.g. 'background/capacity/linear_S100')")
    root = Path(results_dir) if results_dir is not None else default_results_dir(scale)
    return root / "runs" / scale / name / f"seed{seed}.json"


def config_hash(config, schedule: Schedule) -> str:
    """Hash of the config and the schedule: changing either makes a different run."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    text = json.dumps({"config": asdict(config), "schedule": asdict(schedule)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _versions() -> dict[str, str]:
    try:
        rfwp_version = importlib.metadata.version("rfwp")
    except importlib.metadata.PackageNotFoundError:
        rfwp_version = "unknown"
    return {"rfwp": rfwp_version, "torch": torch.__version__}


def _dumps(data: dict) -> str:
    """JSON with one line per history row, so a record reads (and diffs) as a table.
    NaN is allowed: a diverged run's NaN loss is a result, recorded as such."""
    head = json.dumps({k: v for k, v in data.items() if k != "history"}, indent=1, default=str)
    rows = ",\n  ".join(json.dumps(row) for row in data["history"])
    return f'{head[:-2]},\n "history": [\n  {rows}\n ]\n}}\n'


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = dict.fromkeys(k for row in rows for k in row)
    return {f"train_{k}": sum(row[k] for row in rows if k in row) / sum(k in row for row in rows) for k in keys}


def execute(name: str, config, make_trainer: Callable[[Any, int], Trainer], schedule: Schedule, *,
            seed: int, scale: str, results_dir: Path | None = None, cache_dir: Path | None = None,
            progress: bool = True, train: bool = True) -> RunRecord | None:
    """Train ``make_trainer(config, seed)`` under ``schedule``, or return the complete record of that run
    (``train=False``: return it, or None where there is none, without training).

    An evaluation follows every ``eval_every`` steps and the step that spends the budget; after each evaluation
    the run stops early if the monitored metric reached ``target`` or has not improved for ``patience``
    evaluations. A progress bar shows the run's name, its latest evaluation and the time left. A trainer with a
    ``final_evaluate()`` method has it called once after the last step (an evaluation too costly for every
    ``eval_every``); its metrics (numbers, or text such as sampled continuations) join ``record.final``,
    replacing the last evaluation's of the same name.

    Under torchrun every process runs this loop with its own trainer (all built from ``seed``, then each drawing
    its own random numbers, e.g. dropout masks) and takes the main process's metrics, so that every process
    stops at the same step. The main process alone writes checkpoints and the record; every process resumes from
    the same checkpoint, which holds each process's global torch RNG, and returns once the record is written.
    """
    path = record_path(name, seed, scale, results_dir)
    digest = config_hash(config, schedule)
    if path.exists():
        record = RunRecord.load(path)
        if record.status == "complete" and record.config_hash == digest:
            return record
    if not train:
        return None
    cache_root = Path(cache_dir) if cache_dir is not None else REPO_ROOT / ".cache" / "rfwp" / "checkpoints"
    checkpoint_path = cache_root / scale / name / f"seed{seed}.pt"
    checkpoint_every = schedule.checkpoint_every or schedule.eval_every

    torch.manual_seed(seed)
    trainer = make_trainer(config, seed)
    processes = distributed.world_size()
    if processes > 1:
        distributed.setup()   # (as the trainer did with its model's device, if it is a data-parallel one)
        # A seed per process, drawn from the run's seed: the processes' dropout masks are independent of each other
        torch.manual_seed(int(torch.randint(2**62, ())) + distributed.rank())
    # The loop's state: everything besides the trainer that the rest of the run depends on.
    loop = {"done": dict.fromkeys(BUDGETS, 0), "rows": [], "interval": [], "best": None, "bad_evals": 0,
            "wall_time": 0.0}
    resumed_from = None
    if checkpoint_path.exists():
        # Under torchrun onto the CPU: the main process may have written it from another GPU than this process's
        # (load_state_dict moves what it restores where it belongs; the RNG state must be on the CPU anyway).
        checkpoint = torch.load(checkpoint_path, weights_only=False, map_location="cpu" if processes > 1 else None)
        if checkpoint["config_hash"] == digest:
            written_by = checkpoint.get("processes", 1)
            if written_by != processes:
                raise ValueError(f"{checkpoint_path} was written by {written_by} process(es) and resumes only under "
                                 f"as many (it holds per-process random states): run it with torchrun "
                                 f"--nproc_per_node {written_by}, or delete the checkpoint to start again")
            trainer.load_state_dict(checkpoint["trainer"])
            rng = checkpoint["torch_rng"]
            torch.set_rng_state(rng if processes == 1 else rng[distributed.rank()])
            loop = checkpoint["loop"]
            resumed_from = loop["done"]["steps"]

    done = loop["done"]
    unit = next(u for u in BUDGETS if getattr(schedule, u) is not None)   # the progress bar counts this budget
    bar = tqdm(total=getattr(schedule, unit), initial=done[unit], desc=name, unit=unit.rstrip("s"),
               disable=not progress or not distributed.is_main(), leave=False, dynamic_ncols=True)
    started = time.perf_counter() - loop["wall_time"]
    stopped = None
    while stopped is None:
        metrics = {k: float(v) for k, v in trainer.train_step(done["steps"]).items()}
        done["steps"] += 1
        for count in ("tokens", "frames"):
            done[count] += int(metrics.pop(count, 0))
        loop["interval"].append(metrics)
        step, spent = done["steps"], schedule.spent(done)
        if step % schedule.eval_every == 0 or spent:
            # the main process's evaluation in every process, so that they all stop at the same step
            metrics = distributed.broadcast({k: float(v) for k, v in trainer.evaluate().items()})
            if schedule.monitor not in metrics:
                raise KeyError(f"Schedule.monitor is {schedule.monitor!r} but evaluate() returned only "
                               f"{sorted(metrics)}; set Schedule(monitor=...) to one of them")
            counts = {c: done[c] for c in ("tokens", "frames") if done[c]}
            row = {"step": step, **counts, "wall_time": time.perf_counter() - started, **metrics,
                   **_mean(loop["interval"])}
            loop["rows"].append(row)
            loop["interval"] = []
            value = metrics[schedule.monitor]
            if schedule.better(value, None if loop["best"] is None else loop["best"][schedule.monitor]):
                loop["best"], loop["bad_evals"] = row, 0
            else:
                loop["bad_evals"] += 1
            bar.update(done[unit] - bar.n)
            bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()})
            if spent:
                stopped = next(u for u in BUDGETS
                               if getattr(schedule, u) is not None and done[u] >= getattr(schedule, u))
            elif schedule.reached(value):
                stopped = "target"
            elif schedule.patience is not None and loop["bad_evals"] >= schedule.patience:
                stopped = "patience"
        if stopped is None and step % checkpoint_every == 0:
            loop["wall_time"] = time.perf_counter() - started
            # every process takes part (state_dict and the RNG states may gather from each); the main one writes
            rng = torch.get_rng_state() if processes == 1 else distributed.gather(torch.get_rng_state())
            checkpoint = {"config_hash": digest, "trainer": trainer.state_dict(), "torch_rng": rng, "loop": loop,
                          "processes": processes}
            if distributed.is_main():
                atomic_write(checkpoint_path, lambda tmp: torch.save(checkpoint, tmp))
    bar.close()

    rows = loop["rows"]
    final = {k: v for k, v in rows[-1].items() if k not in ("step", "tokens", "frames", "wall_time")
             and not k.startswith("train_")}
    if hasattr(trainer, "final_evaluate"):
        extra = trainer.final_evaluate()
        final.update(distributed.broadcast({k: v if isinstance(v, str) else float(v) for k, v in extra.items()}))
    record = RunRecord(
        name=name, config=asdict(config), config_hash=digest, seed=seed, scale=scale, schedule=asdict(schedule),
        history=pd.DataFrame(rows), final=final, best=loop["best"], steps_done=done["steps"], stopped=stopped,
        wall_time=time.perf_counter() - started, resumed_from=resumed_from, versions=_versions(), path=path)
    if distributed.is_main():
        atomic_write(path, lambda tmp: tmp.write_text(_dumps(record.to_json())))
        checkpoint_path.unlink(missing_ok=True)
    distributed.barrier()   # a process that asks for this run again finds its record
    return record
