"""The papers' own numbers, as data: each transcribed table is ``<paper>_<ident>.csv`` in this folder (a
figure's file holds what the paper states of it in numbers, where it does).

    rfwp.paper.table("rfwp", "T2")     # DataFrame, first column source = "paper"
    rfwp.paper.contents("icml")        # every table and figure of a paper with a one-line description
    rfwp.paper.stated("rfwp", "speed")  # numbers a paper states in its text, not in a table or figure

paper is ``rfwp`` (Irie, Schlag, Csordás, Schmidhuber, NeurIPS 2021) or ``icml`` (Schlag, Irie, Schmidhuber,
ICML 2021). A CSV may start with ``#`` lines: notes on the transcription (units, ambiguities), returned in
``df.attrs["notes"]``. Standard deviations are separate ``*_std`` columns; a bold (best) entry of the paper
is not marked. Empty cells are values the paper does not report.
"""
from __future__ import annotations

import io
from importlib import resources

import pandas as pd

PAPERS = {
    "rfwp": {"short": "RFWP", "title": "Irie et al. (NeurIPS 2021), Going Beyond Linear Transformers with "
                                       "Recurrent Fast Weight Programmers"},
    "icml": {"short": "ICML", "title": "Schlag et al. (ICML 2021), Linear Transformers Are Secretly Fast "
                                       "Weight Programmers"},
}
_KINDS = {"T": "Table", "F": "Figure"}


def _read(name: str) -> tuple[pd.DataFrame, list[str]]:
    text = resources.files(__name__).joinpath(name).read_text()
    lines = text.splitlines(keepends=True)
    notes = [line[1:].strip() for line in lines if line.startswith("#")]
    body = "".join(line for line in lines if not line.startswith("#"))
    return pd.read_csv(io.StringIO(body)), notes


def _check_paper(paper: str) -> None:
    if paper not in PAPERS:
        raise ValueError(f"paper must be one of {sorted(PAPERS)}, got {paper!r}")


def kind_name(ident: str) -> str:
    """"Table" for T<n>, "Figure" for F<n>."""
    if len(ident) < 2 or ident[0] not in _KINDS or not ident[1:].isdigit():
        raise ValueError(f"ident must be T<number> (a table) or F<number> (a figure), got {ident!r}")
    return _KINDS[ident[0]]


def contents(paper: str) -> pd.DataFrame:
    """The paper's tables then figures (columns ident, description, transcribed: whether ``table`` has it)."""
    _check_paper(paper)
    tables, _ = _read("tables.csv")
    figures, _ = _read("figures.csv")
    tables = tables[tables["paper"] == paper].drop(columns="paper")
    items = pd.concat([tables, figures[figures["paper"] == paper].drop(columns="paper")], ignore_index=True)
    items["transcribed"] = [resources.files(__name__).joinpath(f"{paper}_{i}.csv").is_file() for i in items["ident"]]
    return items


def describe(paper: str, ident: str) -> str:
    """The one-line description of a table or figure; an error naming the valid idents if there is none."""
    kind_name(ident)
    items = contents(paper)
    match = items[items["ident"] == ident]
    if match.empty:
        raise ValueError(f"{PAPERS[paper]['short']} has no {kind_name(ident).lower()} {ident}; "
                         f"it has {', '.join(items['ident'])}")
    return match["description"].iloc[0]


def table(paper: str, ident: str) -> pd.DataFrame:
    """The paper's numbers of table (or figure) ``ident``, every row labelled ``source = "paper"``."""
    describe(paper, ident)
    name = f"{paper}_{ident}.csv"
    if not resources.files(__name__).joinpath(name).is_file():
        raise FileNotFoundError(f"{PAPERS[paper]['short']} {ident} is not transcribed (no rfwp/paper/{name})")
    df, notes = _read(name)
    df.insert(0, "source", "paper")
    df.attrs["notes"] = notes
    return df


def stated(paper: str, topic: str) -> pd.DataFrame:
    """Numbers the paper states in its text (``<paper>_<topic>.csv``, e.g. RFWP Sec. 4.1's training speeds),
    every row labelled ``source = "paper"``; the notes say where in the paper they are."""
    _check_paper(paper)
    name = f"{paper}_{topic}.csv"
    if not resources.files(__name__).joinpath(name).is_file():
        raise FileNotFoundError(f"no numbers of {PAPERS[paper]['short']} on {topic!r} are transcribed "
                                f"(no rfwp/paper/{name})")
    df, notes = _read(name)
    df.insert(0, "source", "paper")
    df.attrs["notes"] = notes
    return df
