"""Language-model training speed and memory on this machine (RFWP Sec. 4.1), for the notebook 02_language_modelling.

    python -m benchmarks.lm [--out results/benchmarks]      # about 10 minutes on 2 idle cores
    python -m benchmarks.lm --quick --out /tmp/bench         # seconds: every code path on tiny sizes (for the tests)

Speed: training tokens/s (forward, backward, clipping and the Adam step: ``SequenceTrainer.train_step`` as the
language-model runs take it) of every
model of RFWP Table 1 at the paper's configuration (LM_SMALL at WikiText-103's vocabulary, adaptive softmax; a
batch of 2 segments of 256 instead of 96, which would not fit the time) and at the cpu scale's (its architecture,
batch and the Shakespeare vocabulary), each as a ratio to the Transformer measured in the same run, beside the
paper's GPU figures. Memory: the peak resident memory of one forward and backward pass of the Transformer and the
Delta Net at
the cpu architecture, batch 1, against the segment length (256, 1024, 4096), and the size of the state each
carries to the next segment: the Transformer's cache of keys and values grows with the context, the fast weights
do not. Each case runs in a fresh process (its peak memory is its own). Writes lm.json and lm.md.
"""
from __future__ import annotations

import json
import resource
import sys
import time

import pandas as pd
import torch

from benchmarks.report import case_parser, machine, run_case, write_result
from rfwp.models import MODELS, TABLE1_MODELS
from rfwp.results import markdown_table
from tests.oracle import state_tensors   # every tensor of a state, in order

SPEED_BATCH = {"paper": 2, "cpu": None}   # None: the cpu scale's batch
MEMORY_MODELS, MEMORY_LENGTHS = ("transformer", "delta_net"), (256, 1024, 4096)
QUICK = dict(models=("transformer", "delta_net"), lengths=(16, 64), repeats=1)


def _trainer(setting: str, model: str, batch: int | None, length: int):
    """A SequenceTrainer of ``model`` at ``setting`` on a random token stream (the data does not change the time)."""
    from rfwp.models import build_model
    from rfwp.tasks.language_modelling import corpus as corpora
    from rfwp.tasks.language_modelling.presets import (CPU, SMOKE, WIKITEXT103_VOCABULARY, lm_small_config,
                                                       model_config)
    from rfwp.train import ContiguousSegments, OptimiserConfig, SequenceTrainer
    if setting == "paper":
        config, batch = lm_small_config(model, WIKITEXT103_VOCABULARY), batch or 2
    else:
        scale = CPU if setting == "cpu" else SMOKE
        config = model_config(model, scale.architecture, len(corpora.load("shakespeare").vocabulary))
        batch = batch or scale.batch_size
    stream = torch.randint(config.vocab_size, (batch * length * 4 + 1,))
    trainer = SequenceTrainer(build_model(model, config), OptimiserConfig(lr=1e-4, clip=0.25),
                              ContiguousSegments(stream, batch, length), {}, score_targets=True)
    return trainer, batch


def speed_case(setting: str, model: str, repeats: int) -> dict:
    trainer, batch = _trainer(setting, model, SPEED_BATCH.get(setting), 256 if setting != "smoke" else 16)
    length = trainer.train.segment_length
    trainer.train_step(0)   # warm-up
    start = time.perf_counter()
    for step in range(repeats):
        trainer.train_step(step + 1)
    seconds = (time.perf_counter() - start) / repeats
    params = sum(p.numel() for p in trainer.model.parameters())
    return dict(setting=setting, model=model, batch=batch, length=length, params_M=params / 1e6,
                tokens_per_s=batch * length / seconds)


def memory_case(model: str, length: int) -> dict:
    trainer, _ = _trainer("cpu", model, 1, length)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    batch = trainer.train.next()
    logits, state = trainer.model(batch.inputs)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.targets.flatten()).backward()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    carried = sum(t.numel() * t.element_size() for t in state_tensors(state.layers))
    return dict(model=model, length=length, peak_mem_MB=peak_kb / 1024, state_MB=carried / 2**20)


def speed_table(rows: list[dict]) -> pd.DataFrame:
    """Tokens/s and the ratio to the Transformer of the same setting, beside the paper's words/s and ratio."""
    from rfwp import paper
    stated = paper.stated("rfwp", "speed").set_index("model")["kwords_per_s"]
    table = pd.DataFrame(rows)
    base = table[table.model == "transformer"].set_index("setting")["tokens_per_s"]
    table["ratio_to_transformer"] = table.tokens_per_s / table.setting.map(base)
    names = table.model.map(lambda m: MODELS[m].name)
    table["paper_kwords_per_s"] = names.map(stated)
    table["paper_ratio_to_transformer"] = table.paper_kwords_per_s / stated["Transformer"]
    return table


def report(result: dict) -> str:
    speed = pd.DataFrame(result["speed"]).round({"params_M": 1, "tokens_per_s": 0, "ratio_to_transformer": 2,
                                                 "paper_ratio_to_transformer": 2})
    memory = pd.DataFrame(result["memory"]).round({"peak_mem_MB": 1, "state_MB": 3})
    m = result["machine"]
    return (f"# Language-model training on this machine\n\n{m['platform']}, {m['threads']} threads, torch "
            f"{m['torch']}. Produced by `python -m benchmarks.lm`.\n\n## Training speed (RFWP Sec. 4.1)\n\n"
            f"{markdown_table(speed)}\n\nThe paper's figures are words/s on GPUs (RFWP Sec. 4.1).\n\n"
            f"## Memory of a forward and backward pass and of the carried state (cpu architecture, batch 1)\n\n"
            f"{markdown_table(memory)}\n")


def main(argv: list[str] | None = None):
    parser = case_parser("benchmarks.lm", __doc__, repeats=3, threads=2, quick="tiny sizes, two models",
                         case=("KIND", "A", "B"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.case:
        kind, a, b = args.case
        print(json.dumps(speed_case(a, b, args.repeats) if kind == "speed" else memory_case(a, int(b))))
        return
    models, lengths, settings = TABLE1_MODELS, MEMORY_LENGTHS, ("paper", "cpu")
    if args.quick:
        models, lengths, args.repeats, settings = QUICK["models"], QUICK["lengths"], QUICK["repeats"], ("smoke",)
    start = time.perf_counter()
    options = ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    speed, memory = [], []
    for setting in settings:
        for model in models:
            print(f"speed  {setting:6s} {model}", file=sys.stderr, flush=True)
            row = run_case("benchmarks.lm", options, ["speed", setting, model], args.timeout)
            speed += [row] if row else []
    for model in MEMORY_MODELS:
        for length in lengths:
            print(f"memory {model} L={length}", file=sys.stderr, flush=True)
            row = run_case("benchmarks.lm", options, ["memory", model, str(length)], args.timeout)
            memory += [row] if row else []
    result = dict(machine=machine(args.threads), speed=speed_table(speed).to_dict(orient="records"), memory=memory)
    write_result(args.out, "lm", result, report(result))
    print(f"{len(speed) + len(memory)} cases in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
