"""Sequential ListOps, RFWP Sec. 4.3 and App. B.3 (a variant of Nangia and Bowman's ListOps): a list in prefix
notation over MIN, MAX and FIRST whose arguments are digits or sub-lists, read once left to right; the target,
a digit, is predicted at the last token. App. B.3's example, of depth 2:

    [MAX 6 1 [FIRST 2 3 ] 0 [MIN 4 7 1 ] ]   ->  6

Depth is the nesting depth of the lists (the root list is depth 1), as in that example, and a dataset of
depth D holds only lists of depth exactly D ("the task with depth 10 only contains sequences with depth 10").
The authors' generator counts one more, the depth of the deepest digit: its ``--only_depth 11`` is the
paper's depth 10 (original-code.md §4).

Where App. B.3 is silent we follow the authors' generator (original-code.md §4):
  - the root is a list; every other argument is a digit with probability 0.75, else a sub-list;
  - a list has 2 to 5 arguments, uniformly (App. B.3: "random but less than the pre-determined maximum
    number (here set to five)"; the generator's randint(2, 5) includes five);
  - the operator is uniform over the three;
  - a list at depth 19 takes only digits, so the depth is at most 19;
  - lists of another depth are rejected; there is no length limit (the generator's filters are off), and
    the paper's lengths (depth 10: 37 to 364 tokens) are what these rules give.

    python -m rfwp.tasks.listops.data --depth 10 --sizes 10000,1000,1000 --seed 42 --out DIR

writes DIR/{train,valid,test}.tsv, a line ``label<TAB>tokens`` a sequence, and prints the statistics beside
the paper's.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import NamedTuple, Sequence

import pandas as pd
import torch

from rfwp.tasks import generated
from rfwp.tasks.generated import SPLITS, Vocabulary
from rfwp.train import TokenBatch

OPERATORS = {"[MIN": min, "[MAX": max, "[FIRST": lambda arguments: arguments[0]}
CLOSE = "]"
DIGITS = tuple(str(d) for d in range(10))
ARGUMENTS = (2, 5)     # fewest and most arguments of a list
P_SUBLIST = 0.25       # an argument below the root is a sub-list (authors' code: a digit "with VALUE_P" = 0.75)
MAX_DEPTH = 19         # the authors' generator forces digits at digit depth 20
VOCABULARY = Vocabulary((*OPERATORS, CLOSE, *DIGITS))  # 14 tokens


class Example(NamedTuple):
    label: int
    tokens: list[str]


class TooDeep(Exception):
    """A list being drawn nests deeper than asked: it is rejected before it is finished."""


def check_depth(depth: int) -> None:
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be between 1 and {MAX_DEPTH} (the lists' nesting depth; the paper uses 10 "
                         f"and 15), got {depth}")


def evaluate(tokens: Sequence[str]) -> int:
    """The value of a list, read left to right with a stack of the open lists (operator, arguments so far)."""
    stack: list[tuple[str, list[int]]] = []
    for token in tokens:
        if token in OPERATORS:
            stack.append((token, []))
        elif token == CLOSE:
            operator, arguments = stack.pop()
            value = OPERATORS[operator](arguments)
            if not stack:
                return value
            stack[-1][1].append(value)
        else:
            stack[-1][1].append(int(token))
    raise ValueError(f"an unclosed list: {' '.join(tokens)}")


Shape = list  # a list's arguments, each None (a digit) or the shape of a sub-list


def draw_shape(rng: random.Random, depth: int, max_depth: int) -> tuple[Shape, int]:
    """The shape of a list at ``depth`` and the depth of its deepest sub-list (its own if it has none);
    TooDeep as soon as a sub-list would be deeper than ``max_depth``."""
    if depth > max_depth:
        raise TooDeep
    shape, deepest = [], depth
    for _ in range(rng.randint(*ARGUMENTS)):
        if depth < MAX_DEPTH and rng.random() < P_SUBLIST:
            sublist, sub_deepest = draw_shape(rng, depth + 1, max_depth)
            shape.append(sublist)
            deepest = max(deepest, sub_deepest)
        else:
            shape.append(None)
    return shape, deepest


def draw_tokens(rng: random.Random, shape: Shape) -> list[str]:
    """A list of ``shape`` with its operators and digits drawn."""
    tokens = [rng.choice(tuple(OPERATORS))]
    for argument in shape:
        tokens += [rng.choice(DIGITS)] if argument is None else draw_tokens(rng, argument)
    return tokens + [CLOSE]


def draw_example(rng: random.Random, depth: int) -> Example:
    """A list of depth exactly ``depth``: shapes are drawn until one has it (the authors' rejection sampling),
    then its operators and digits. These are independent of the shape, so drawing them only for the shape
    kept, and giving up on a shape as soon as it is too deep, keep the authors' distribution."""
    while True:
        try:
            shape, deepest = draw_shape(rng, 1, depth)
        except TooDeep:
            continue
        if deepest == depth:
            tokens = draw_tokens(rng, shape)
            return Example(evaluate(tokens), tokens)


def generate(depth: int = 10, sizes: Sequence[int] = generated.PAPER_SIZES, seed: int = 42) -> dict[str, list[Example]]:
    """Train, valid and test lists of depth ``depth``, no list twice."""
    check_depth(depth)
    rng = random.Random(seed)
    return generated.distinct_splits(lambda: draw_example(rng, depth), key=lambda example: " ".join(example.tokens),
                                     sizes=sizes)


def write(splits: dict[str, list[Example]], out: Path) -> None:
    for split, examples in splits.items():
        generated.write_lines(out / f"{split}.tsv", (f"{e.label}\t{' '.join(e.tokens)}" for e in examples))


def split_statistics(examples: list[Example]) -> dict[str, float]:
    """Lengths in tokens, the vocabulary in use and the label distribution (% of the split)."""
    labels = [e.label for e in examples]
    return {**generated.length_statistics([len(e.tokens) for e in examples]),
            "vocabulary": len({t for e in examples for t in e.tokens}),
            **{f"label_{d}_percent": round(100 * labels.count(d) / len(labels), 1) for d in range(10)}}


def statistics(splits: dict[str, list[Example]], depth: int) -> pd.DataFrame:
    ours = {split: split_statistics(examples) for split, examples in splits.items()}
    return generated.beside_paper(ours, "listops", f"depth={depth}")


def load(directory: str | Path) -> dict[str, TokenBatch]:
    """A directory written by ``write`` as tensors for ``rfwp.train.SequenceTrainer``: VOCABULARY ids, and
    the label as the target at the last token, the only position scored."""
    splits = {}
    for split in SPLITS:
        lines = [line.split("\t") for line in generated.read_lines(Path(directory) / f"{split}.tsv")]
        ids, real = generated.pad([VOCABULARY.ids(tokens.split()) for _, tokens in lines])
        last = (real.sum(1) - 1)[:, None]
        mask = torch.zeros_like(real).scatter(1, last, True)
        targets = torch.zeros_like(ids).scatter(1, last, torch.tensor([[int(label)] for label, _ in lines]))
        splits[split] = TokenBatch(ids, targets, mask)
    return splits


def main(argv: Sequence[str] | None = None) -> None:
    parser = generated.command("Write sequential ListOps lists (RFWP App. B.3) and print their statistics.")
    parser.add_argument("--depth", type=int, default=10, help="the lists' nesting depth (paper: 10 and 15)")
    args = parser.parse_args(argv)
    splits = generated.generate_or_exit(parser, generate, depth=args.depth, sizes=args.sizes, seed=args.seed)
    write(splits, args.out)
    print(f"sequential ListOps, depth {args.depth}, seed {args.seed}: {args.out}/{{{','.join(SPLITS)}}}.tsv")
    print(statistics(splits, args.depth).to_string())


if __name__ == "__main__":
    main()
