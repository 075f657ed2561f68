"""Translation training speed on this machine (ICML Sec. 6.2, App. E): the measurement behind the cpu scale of
notebook 07_translation.

    python -m benchmarks.translation [--out results/benchmarks]    # about 2 minutes on 2 idle cores
    python -m benchmarks.translation --quick --out /tmp/bench      # seconds: the code path at smoke size

Seconds per update (``TranslationTrainer.train_step``: forward, label-smoothed loss, backward and the Adam step on
one token-budget batch of the scale's corpus) of every attention and d_dot of ICML Table 1 at the cpu scale's
architecture, vocabulary and batch, on two threads as the notebook's runs (one at a time); with the updates an epoch
of the training split takes and the minutes the scale's updates take. Each case runs in a fresh process. Writes
translation.json and translation.md.
"""
from __future__ import annotations

import json
import sys
import time

import pandas as pd
import torch

from benchmarks.report import case_parser, machine, run_case, write_result
from rfwp.results import markdown_table

QUICK = dict(settings=(("softmax", 64), ("dpfp", 256)), repeats=1)


def speed_case(attention: str, d_dot: int, repeats: int, scale: str) -> dict:
    from rfwp.tasks.translation import trainer
    from rfwp.tasks.translation.presets import preset
    config = trainer.config(attention, d_dot, scale)
    run = trainer.make_trainer(config, seed=0)
    run.train_step(1)   # warm-up
    start = time.perf_counter()
    for step in range(repeats):
        run.train_step(step + 2)
    seconds = (time.perf_counter() - start) / repeats
    steps = trainer.schedule(scale).steps
    per_epoch = len(run.stream) / config.accumulate
    return dict(attention=attention, d_dot=config.model.d_dot, params_M=sum(t.numel() for t in run.model.parameters())
                / 1e6, seconds_per_update=seconds, updates_per_epoch=per_epoch, scale_updates=steps,
                scale_epochs=steps / per_epoch, scale_minutes=steps * seconds / 60, corpus=preset(scale).corpus)


def report(result: dict) -> str:
    table = pd.DataFrame(result["speed"]).round({"params_M": 2, "seconds_per_update": 2, "updates_per_epoch": 0,
                                                 "scale_epochs": 1, "scale_minutes": 1})
    m = result["machine"]
    return (f"# Translation training speed on this machine\n\n{m['platform']}, {m['threads']} thread(s), torch "
            f"{m['torch']}. Produced by `python -m benchmarks.translation` at scale `{result['scale']}`; "
            f"scale_minutes: the training updates of a run at this speed, without its evaluations.\n\n"
            f"{markdown_table(table)}\n")


def main(argv: list[str] | None = None):
    from rfwp.tasks.translation.presets import TABLE1_SETTINGS
    parser = case_parser("benchmarks.translation", __doc__, repeats=20, threads=2,
                         quick="the smoke scale, two attentions", case=("ATTENTION", "D_DOT", "SCALE"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.case:
        attention, d_dot, scale = args.case
        print(json.dumps(speed_case(attention, int(d_dot), args.repeats, scale)))
        return
    settings, scale = TABLE1_SETTINGS, "cpu"
    if args.quick:
        settings, args.repeats, scale = QUICK["settings"], QUICK["repeats"], "smoke"
    start = time.perf_counter()
    options = ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    rows = []
    for attention, d_dot in settings:
        print(f"{attention} d_dot {d_dot}", file=sys.stderr, flush=True)
        row = run_case("benchmarks.translation", options, [attention, str(d_dot), scale], args.timeout)
        rows += [row] if row else []
    result = dict(machine=machine(args.threads), scale=scale, speed=rows)
    write_result(args.out, "translation", result, report(result))
    print(f"{len(rows)} cases in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
