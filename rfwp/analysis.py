"""What every task notebook does with its runs: sweep a grid of runs into one tidy DataFrame, decide claims,
and draw figures in one style.

    points = [{"variant": v, "S": S} for v, sizes in preset.capacity.items() for S in sizes]
    df = sweep(retrieval.run_point, points, seeds=(0, 1, 2), workers=2, desc="ICML Fig. 2")
    # one row per run: the point's fields, seed, the best evaluation's metrics, steps, stop reason, wall time

A sweep trains the runs it has no complete record of in ``workers`` processes of one thread each (on a small
machine two single-threaded runs finish sooner than two runs one after the other on two threads), and reads
every complete record as it is.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterable

import pandas as pd
import torch
from tqdm.auto import tqdm

from rfwp.train import RunRecord

PALETTE = "colorblind"


def _worker(sweep_pid: int) -> None:
    """A sweep's worker process: one thread (``workers`` of them share the cores), and it ends with the sweep
    (``sweep_pid``). Killed alone (``kill PID``, not its process group), a sweep would leave its workers training,
    and one that trained on would rewrite the checkpoint that a restarted sweep resumes from."""
    torch.set_num_threads(1)
    if sys.platform == "linux":
        PR_SET_PDEATHSIG = 1   # prctl(2): the signal this process gets when its parent dies
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != sweep_pid:   # the sweep died before the call above (an orphan's new parent is init
            os._exit(1)                 # or a subreaper: not always pid 1)


def sweep_records(run: Callable[..., RunRecord], points: Iterable[dict], seeds: Iterable[int], *,
                  workers: int = 1, desc: str = "sweep") -> list[tuple[dict, int, RunRecord]]:
    """``run(**point, seed=seed)`` for every point and seed, in that order: (point, seed, record) triples.
    Complete records are read here (``run(..., train=False)``); the runs without one train in ``workers``
    processes. ``run`` must be a module-level function (it is sent to the worker processes by name) that
    passes ``progress`` and ``train`` on to ``rfwp.train.execute``."""
    jobs = [(dict(point), seed) for seed in seeds for point in points]
    records: dict[int, RunRecord] = {}
    bar = tqdm(total=len(jobs), desc=desc, unit="run", dynamic_ncols=True)

    def finished(i: int, record: RunRecord) -> None:
        records[i] = record
        best = {k: v for k, v in record.best.items()
                if k not in ("step", "tokens", "frames", "wall_time") and not k.startswith("train_")}
        bar.set_postfix_str(f"{record.name} seed {record.seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in best.items()))
        bar.update(1)

    missing = []
    for i, (point, seed) in enumerate(jobs):
        record = run(**point, seed=seed, progress=False, train=False)
        if record is None:
            missing.append(i)
        else:
            finished(i, record)
    if workers <= 1 or len(missing) <= 1:
        for i in missing:
            point, seed = jobs[i]
            finished(i, run(**point, seed=seed, progress=False))
    else:
        # spawn, not fork: a forked child of a process whose OpenMP pool is running can deadlock.
        with ProcessPoolExecutor(min(workers, len(missing)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_worker, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(run, **jobs[i][0], seed=jobs[i][1], progress=False): i for i in missing}
            for future in as_completed(futures):
                finished(futures[future], future.result())
    bar.close()
    return [(point, seed, records[i]) for i, (point, seed) in enumerate(jobs)]


def sweep(run: Callable[..., RunRecord], points: Iterable[dict], seeds: Iterable[int], *, workers: int = 1,
          desc: str = "sweep") -> pd.DataFrame:
    """One row per run: the point's fields, ``seed``, the metrics of its best evaluation (``best_step`` the
    step of it), ``steps`` trained, ``stopped`` (why it ended) and ``wall_time`` in seconds."""
    rows = []
    for point, seed, record in sweep_records(run, points, seeds, workers=workers, desc=desc):
        best = {("best_step" if k == "step" else k): v for k, v in record.best.items()
                if k not in ("wall_time", "tokens", "frames") and not k.startswith("train_")}
        rows.append({**point, "seed": seed, **best, "steps": record.steps_done, "stopped": record.stopped,
                     "wall_time": record.wall_time})
    return pd.DataFrame(rows)


def histories(run: Callable[..., RunRecord], points: Iterable[dict], seeds: Iterable[int], *, workers: int = 1,
              desc: str = "sweep") -> pd.DataFrame:
    """One row per evaluation of every run: the point's fields, ``seed`` and the record's history row."""
    frames = [record.history.assign(**point, seed=seed)
              for point, seed, record in sweep_records(run, points, seeds, workers=workers, desc=desc)]
    return pd.concat(frames, ignore_index=True)


def style() -> None:
    """The one figure style of every notebook (seaborn)."""
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="notebook", palette=PALETTE, font_scale=0.9)
