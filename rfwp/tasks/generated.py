"""What the generated datasets of the algorithmic tasks share (RFWP App. B.1 code execution, App. B.3
sequential ListOps): distinct train/valid/test splits, their command line, statistics printed beside the
paper's, and token ids padded into tensors for ``rfwp.train.SequenceTrainer``.
"""
from __future__ import annotations

import argparse
import io
import itertools
from importlib import resources
from pathlib import Path
from typing import Callable, Hashable, Iterable, Sequence, TypeVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from rfwp.io import atomic_write

SPLITS = ("train", "valid", "test")
# App. B.1 and B.3: "10,000 sequences for training and 1,000 sequences each for validation and test".
PAPER_SIZES = (10_000, 1_000, 1_000)
# Draws in a row that only repeat earlier sequences before we conclude the generator has too few distinct ones.
MAX_REPEATS = 10_000

Sample = TypeVar("Sample")


class Vocabulary:
    """Tokens and their ids, in a fixed order."""

    def __init__(self, tokens: Iterable[str]):
        self.tokens = tuple(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, tokens: Iterable[str]) -> list[int]:
        try:
            return [self.index[token] for token in tokens]
        except KeyError as error:
            raise ValueError(f"token {error.args[0]!r} is not in the vocabulary {' '.join(self.tokens)}") from None


def check_sizes(sizes: Sequence[int]) -> tuple[int, int, int]:
    if len(sizes) != 3 or any(not isinstance(n, int) or n < 1 for n in sizes):
        raise ValueError(f"sizes must be three positive integers (train, valid, test), e.g. 10000,1000,1000; "
                         f"got {sizes}")
    return tuple(sizes)


def parse_sizes(text: str) -> tuple[int, int, int]:
    """``--sizes 10000,1000,1000`` as (train, valid, test)."""
    try:
        return check_sizes([int(n) for n in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be three comma-separated positive integers (train,valid,test), "
                                         f"e.g. 10000,1000,1000; got {text!r}") from None


def distinct_splits(draw: Callable[[], Sample], key: Callable[[Sample], Hashable],
                    sizes: Sequence[int]) -> dict[str, list[Sample]]:
    """``sizes`` samples of ``draw()`` for train, valid and test, no two with the same key within a split or
    across them, so that no validation or test sequence was seen in training. A ValueError if the generator
    runs out of new sequences (``MAX_REPEATS`` repeats in a row)."""
    seen: set[Hashable] = set()
    splits = {}
    for split, size in zip(SPLITS, check_sizes(sizes)):
        samples, repeats = [], 0
        while len(samples) < size:
            sample = draw()
            identity = key(sample)
            if identity in seen:
                repeats += 1
                if repeats == MAX_REPEATS:
                    raise ValueError(f"the generator gave only {len(seen)} distinct sequences ({MAX_REPEATS} repeats "
                                     f"in a row); ask for fewer (--sizes) or longer sequences")
                continue
            seen.add(identity)
            samples.append(sample)
            repeats = 0
        splits[split] = samples
    return splits


def command(description: str) -> argparse.ArgumentParser:
    """The options every generator's command has: --sizes, --seed, --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sizes", type=parse_sizes, default=PAPER_SIZES,
                        help="train,valid,test sequence counts (default: the paper's 10000,1000,1000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42, the authors')")
    parser.add_argument("--out", type=Path, required=True, help="directory to write the three splits to")
    return parser


def generate_or_exit(parser: argparse.ArgumentParser, generate: Callable[..., dict], **arguments) -> dict:
    """``generate(**arguments)``; a ValueError (bad input) becomes the command's one-line usage error, exit 2."""
    try:
        return generate(**arguments)
    except ValueError as error:
        parser.error(str(error))


def write_lines(path: Path, lines: Iterable[str]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in lines)))


def read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: write the dataset with the task's data command first")
    return path.read_text().splitlines()


def length_statistics(lengths: Sequence[int]) -> dict[str, float]:
    return {"sequences": len(lengths), "min_length": min(lengths),
            "mean_length": round(sum(lengths) / len(lengths), 1), "max_length": max(lengths)}


def paper_statistics(task: str, setting: str) -> pd.DataFrame:
    """The statistics RFWP states of a dataset (or, labelled so, the authors' generator gives), indexed by
    statistic with columns value and source; ``rfwp/paper/rfwp_datasets.csv``."""
    text = resources.files("rfwp.paper").joinpath("rfwp_datasets.csv").read_text()
    rows = [line for line in text.splitlines(keepends=True) if not line.startswith("#")]
    table = pd.read_csv(io.StringIO("".join(rows)))
    table = table[(table["task"] == task) & (table["setting"] == setting)]
    return table.set_index("statistic")[["value", "source"]]


def beside_paper(ours: dict[str, dict[str, float]], task: str, setting: str) -> pd.DataFrame:
    """Our statistics, a column per split, with the paper's value and its source beside each (empty where
    the paper gives none)."""
    paper = paper_statistics(task, setting).rename(columns={"value": "paper", "source": "paper_source"})
    table = pd.DataFrame(ours).join(paper)
    return table.map(cell).rename_axis("statistic")


def cell(value) -> str:
    """A table cell as printed: whole numbers without ".0", nothing where there is no value."""
    if pd.isna(value):
        return ""
    return f"{value:.0f}" if isinstance(value, float) and value.is_integer() else str(value)


def pad(rows: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """The rows as one (n, longest) tensor, padded at the end with id 0, and the mask of the real positions.
    A causal model never reads the padding from a real position, so any id serves."""
    lengths = torch.tensor([len(row) for row in rows])
    mask = torch.arange(int(lengths.max())) < lengths[:, None]
    ids = torch.zeros(mask.shape, dtype=torch.long)
    ids[mask] = torch.from_numpy(np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64))  # row-major
    return ids, mask
