"""Atari training throughput on this machine (RFWP Sec. 4.4, App. C): the measurement behind the cpu scale of
notebook 05_atari.

    python -m benchmarks.atari [--out results/benchmarks]     # about 6 minutes on 2 idle cores
    python -m benchmarks.atari --quick --out /tmp/bench       # seconds: the code path on tiny sizes (for the tests)

Environment steps (agent steps of 4 emulator frames, the paper's "environmental steps") per second of the whole
local system: the environments of ale-py's vectorised emulator stepping in the learner's process, the agent acting,
and the V-trace learner's update (``AtariTrainer.train_step``, with the policy lag of one round), for every core of
Tables 7 and 8 with IMPALA's shallow and large (the paper's) encoders, at the cpu scale's environments, batch and
unroll, on Pong (``--game``; the cpu runs' own speeds are notebook 05's throughput table). One torch thread,
with the emulators stepping in a thread of their own (on the second core of this machine), as in a cpu run. Each
case runs in a fresh process. Writes atari.json and atari.md, with the steps an hour of training reaches at each speed.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import pandas as pd
import torch

from benchmarks.report import case_parser, machine, run_case, write_result
from rfwp.results import markdown_table

ENCODERS = ("shallow", "large")
QUICK = dict(cores=("feedforward", "recurrent_delta_net"), encoders=("shallow",), repeats=1)


def speed_case(game: str, core: str, encoder: str, repeats: int, quick: bool) -> dict:
    from rfwp.tasks.atari import trainer
    config = replace(trainer.config(game, core, "smoke" if quick else "cpu"), encoder=encoder)
    run = trainer.make_trainer(config, seed=0)
    run.train_step(0)   # warm-up: starts the environments, fills the first round
    start = time.perf_counter()
    for step in range(repeats):
        run.train_step(step + 1)
    seconds = (time.perf_counter() - start) / repeats
    run.close()
    params = sum(t.numel() for t in run.agent.parameters())
    frames = config.batch_size * config.unroll_length
    return dict(game=config.game, core=core, encoder=encoder, envs=config.envs, batch=config.batch_size,
                unroll=config.unroll_length, params_M=params / 1e6, seconds_per_update=seconds,
                frames_per_s=frames / seconds, frames_per_hour_M=3600 * frames / seconds / 1e6)


def report(result: dict) -> str:
    table = pd.DataFrame(result["speed"]).round({"params_M": 2, "seconds_per_update": 2, "frames_per_s": 0,
                                                 "frames_per_hour_M": 2})
    m = result["machine"]
    return (f"# Atari training throughput on this machine\n\n{m['platform']}, {m['threads']} thread(s), torch "
            f"{m['torch']}. Produced by `python -m benchmarks.atari`. Environment steps (4 emulator frames each) "
            f"per second of actors and learner together.\n\n{markdown_table(table)}\n")


def main(argv: list[str] | None = None):
    from rfwp.tasks.atari.presets import PAPER_CORES
    parser = case_parser("benchmarks.atari", __doc__, repeats=4, threads=1, quick="the smoke scale's sizes, two cores",
                         case=("CORE", "ENCODER"))
    parser.add_argument("--game", default="pong")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(speed_case(args.game, *args.case, args.repeats, args.quick)))
        return
    cores, encoders = PAPER_CORES, ENCODERS
    if args.quick:
        cores, encoders, args.repeats = QUICK["cores"], QUICK["encoders"], QUICK["repeats"]
    start = time.perf_counter()
    options = ["--game", args.game, "--threads", str(args.threads), "--repeats", str(args.repeats)] + (
        ["--quick"] if args.quick else [])
    rows = []
    for encoder in encoders:
        for core in cores:
            print(f"{encoder:8s} {core}", file=sys.stderr, flush=True)
            row = run_case("benchmarks.atari", options, [core, encoder], args.timeout)
            rows += [row] if row else []
    result = dict(machine=machine(args.threads), speed=rows)
    write_result(args.out, "atari", result, report(result))
    print(f"{len(rows)} cases in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
