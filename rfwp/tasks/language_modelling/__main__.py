"""Train one language model, alone or data-parallel:

    python -m rfwp.tasks.language_modelling --model delta_net --scale cpu
    torchrun --standalone --nproc_per_node 2 -m rfwp.tasks.language_modelling --model delta_rnn --full-context
    python -m rfwp.tasks.language_modelling --model delta_net --scale paper --data-dir ~/data/wikitext-103

The run record goes to results/runs/<scale>/language_modelling/...; a killed run resumes from its checkpoint
when started again with the same arguments (and the same number of processes).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from rfwp.feature_maps import FEATURE_MAPS
from rfwp.tasks.language_modelling import corpus as corpora
from rfwp.tasks.language_modelling.presets import preset
from rfwp.tasks.language_modelling.trainer import Variant, config, run
from rfwp.train import SCALES, distributed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rfwp.tasks.language_modelling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model of rfwp.MODELS, e.g. delta_net, transformer_xl")
    parser.add_argument("--scale", default="cpu", choices=SCALES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full-context", action="store_true", help="carry the state across segments")
    parser.add_argument("--feature-map", default="elu", choices=FEATURE_MAPS, help="favor: the Performer")
    parser.add_argument("--m", type=int, help="FAVOR+'s random features (default: the scale's)")
    parser.add_argument("--nu", type=int, default=1, help="DPFP's ν")
    parser.add_argument("--version", help="Delta RNN A/B, Delta LSTM A-D, Delta MLP A/B (default: Table 1's)")
    parser.add_argument("--positions", action=argparse.BooleanOptionalAction,
                        help="absolute positional encoding (default: unless --full-context)")
    parser.add_argument("--attention-normalisation", action="store_true", help="ICML Eqs. 26-28")
    parser.add_argument("--data-dir", help="WikiText-103's folder (wiki.{train,valid,test}.tokens), for scale paper")
    parser.add_argument("--results-dir", type=Path, help="where runs/<scale>/... goes (default: the repository's)")
    args = parser.parse_args(argv)
    variant = dict(full_context=args.full_context, feature_map=args.feature_map, m=args.m, nu=args.nu,
                   version=args.version, positional_encoding=args.positions,
                   attention_normalisation=args.attention_normalisation)
    try:   # bad arguments: one line, before any training
        corpus = corpora.load(preset(args.scale).corpus, args.data_dir)
        config(args.model, args.scale, len(corpus.vocabulary), Variant(**variant))
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as error:
        parser.error(str(error))
    record = run(args.model, args.scale, args.seed, **variant, data_dir=args.data_dir, results_dir=args.results_dir)
    if distributed.is_main():
        print(json.dumps({"record": str(record.path), **record.final}, indent=1))


if __name__ == "__main__":
    main()
