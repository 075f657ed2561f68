"""RFWP Figures 1-12 (Sec. 4.4, App. C) regenerated from the paper's own scores (Tables 7 and 8), and the counts
the text states about each figure, derived again from those scores.

    fig = paper_figure("F1")               # Figure 1: the paper's data, one bar per game
    counts = derived_counts()              # every count the text states, derived vs stated
    best_thresholds()                      # the "similar" thresholds that reproduce the most of the text's counts

Each figure plots, per game, the relative improvement of a model ("ours") over a baseline,

    r = (ours − baseline) / max(|ours|, |baseline|)         (r = 0 where both scores are 0)

The paper does not state its formula. We take this one because it reproduces the only count the text ties to
a number: App. C, "Recurrent Delta Net vs. Delta RNN": "In 16 games, the relative performance gap is within 50%"
(Figure 12), with Seaquest the one game the Delta RNN wins and 3 games the RDN wins clearly. Relative to the
baseline alone, (ours − baseline) / |baseline|, Up'n Down is at +50.7% and only 15 games are within 50%. The
symmetric difference (ours − baseline) / ((|ours| + |baseline|) / 2) cannot be told from ours by counts: for
scores of one sign both are monotone functions of the ratio of the smaller score to the larger, so they sort and
count the games alike at corresponding thresholds (50% of it is 40% of ours, also within 16 games). Ours has
r ∈ [−1, 1] for scores of one sign, with r = −100% meaning the baseline scores and ours does not. Properties:
r(a, b) = −r(b, a), r(ka, kb) = r(a, b) for k > 0, and r > 0 exactly when ours is higher, also for negative
scores (Pong's −21 ... 21).

"Similar" and "clearly". The text counts games where one model is better, "clearly" better, or both "similar";
we read "similar" as |r| ≤ τ and "better" as r > τ, with one τ (``SIMILAR``) for every figure, except Figure 12,
whose statements give their own: 50%. ``best_thresholds`` finds the τ that reproduce the most statements: every
τ in [5.2%, 6.4%) reproduces all of them but one, Figure 4's "the feedforward net clearly dominates only in 4
games", where the scores give 5 (Demon Attack, +6.9%; a threshold above it breaks Figures 1 and 3, where
Assault's +6.6% must count as better and Robotank's −6.6% as worse). The qualitative statements: Figure 9's
"a few games" has no count; Figure 10's "the performance gaps reduce across all games" holds in 12 of the 20
games (the gaps of James Bond, Beam Rider and Berzerk grow by 35 to 50 points).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

import rfwp.paper
from rfwp.tasks.atari.presets import PAPER_GAMES

SIMILAR = 0.06   # |r| ≤ SIMILAR: "similar" scores (module docstring: any value in [5.2%, 6.4%) does as well)


@dataclass(frozen=True)
class Comparison:
    """A model against a baseline (agent.CORES names), and the colour of its figures in the paper."""
    ours: str
    baseline: str
    colour: int   # index into the seaborn "colorblind" palette: App. C names the figures' colours

    @property
    def title(self) -> str:
        return f"{CORE_LABELS[self.ours]} vs {CORE_LABELS[self.baseline]}"


CORE_LABELS = {"feedforward": "Feedforward", "lstm": "LSTM", "linear_transformer": "Linear Transformer",
               "delta_net": "Delta Net", "recurrent_delta_net": "RDN", "delta_rnn": "Delta RNN"}
# Tables 7 and 8's column of each core
TABLE_COLUMNS = {core: ("rdn" if core == "recurrent_delta_net" else core) for core in CORE_LABELS}
# The pairs of Figures 1-12, each at 50 M then 200 M steps; colours as App. C names them (orange, pink, sky blue,
# green, grey; Figures 1-2's is not named: blue)
COMPARISONS = {
    "rdn_vs_lstm": Comparison("recurrent_delta_net", "lstm", 0),
    "feedforward_vs_lstm": Comparison("feedforward", "lstm", 1),
    "rdn_vs_linear_transformer": Comparison("recurrent_delta_net", "linear_transformer", 6),
    "rdn_vs_delta_net": Comparison("recurrent_delta_net", "delta_net", 9),
    "delta_rnn_vs_lstm": Comparison("delta_rnn", "lstm", 2),
    "rdn_vs_delta_rnn": Comparison("recurrent_delta_net", "delta_rnn", 7),
}
STEPS = (50, 200)   # millions of environment steps: Table 7, Table 8
FIGURES = {f"F{2 * i + k + 1}": (name, steps) for i, name in enumerate(COMPARISONS) for k, steps in enumerate(STEPS)}


def relative_improvement(ours, baseline):
    """r = (ours − baseline) / max(|ours|, |baseline|), 0 where both are 0, NaN where either is (module docstring).
    Scalars give a float, arrays and Series an array of their shape."""
    ours, baseline = np.asarray(ours, dtype=float), np.asarray(baseline, dtype=float)
    scale = np.maximum(np.abs(ours), np.abs(baseline))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(scale == 0, 0.0, (ours - baseline) / scale)
    return r if r.ndim else float(r)


@lru_cache(maxsize=None)
def game_titles() -> dict[str, str]:
    """ale-py's game names (presets.PAPER_GAMES) → the names of Tables 7 and 8, which list them in that order."""
    return dict(zip(PAPER_GAMES, rfwp.paper.table("rfwp", "T7").game))


def title(game: str) -> str:
    """The paper's name of an ale-py game ("Kung-Fu Master" for "kung_fu_master"), else the name itself."""
    return game_titles().get(game, game)


def paper_scores(steps: int) -> pd.DataFrame:
    """Table 7 (steps = 50) or Table 8 (200): the paper's test scores, indexed by game."""
    if steps not in STEPS:
        raise ValueError(f"the paper reports scores after {STEPS} million steps, not {steps!r}")
    return rfwp.paper.table("rfwp", "T7" if steps == 50 else "T8").set_index("game")


def paper_improvements(ident: str) -> pd.DataFrame:
    """The bars of the paper's Figure ``ident`` (F1 ... F12) from its table: game, the two scores, r; sorted by r,
    the largest first."""
    name, steps = figure_of(ident)
    pair, table = COMPARISONS[name], paper_scores(steps)
    ours, baseline = table[TABLE_COLUMNS[pair.ours]], table[TABLE_COLUMNS[pair.baseline]]
    df = pd.DataFrame({"game": table.index, "ours": ours.values, "baseline": baseline.values,
                       "improvement": relative_improvement(ours, baseline)})
    return df.sort_values("improvement", ascending=False, kind="stable", ignore_index=True)


def figure_of(ident: str) -> tuple[str, int]:
    """(comparison name, millions of steps) of Figure ``ident``."""
    if ident not in FIGURES:
        raise ValueError(f"RFWP's relative-improvement figures are {', '.join(FIGURES)}, not {ident!r}")
    return FIGURES[ident]


def plot_improvements(df: pd.DataFrame, heading: str, colour: int = 0, similar: float | None = SIMILAR, ax=None):
    """A horizontal bar per row of ``df`` (game, improvement), in its order from the top, r in percent; the band
    |r| ≤ ``similar`` shaded (None: no band). Returns the figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import PercentFormatter
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 0.25 * len(df) + 1.2))
    if similar is not None:
        ax.axvspan(-100 * similar, 100 * similar, color="0.9", zorder=0, label=f"|r| ≤ {100 * similar:g}%")
    ax.barh(df.game, 100 * df.improvement, color=sns.color_palette()[colour])
    ax.invert_yaxis()   # the first row at the top
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.xaxis.set_major_formatter(PercentFormatter())
    ax.set(title=heading, xlabel="relative improvement r", ylabel=None)
    if similar is not None:
        ax.legend(loc="lower right", fontsize="small")
    ax.figure.tight_layout()
    return ax.figure


def paper_figure(ident: str, ax=None):
    """The paper's Figure ``ident`` from its own scores, labelled as such."""
    name, steps = figure_of(ident)
    pair = COMPARISONS[name]
    heading = (f"RFWP Fig. {ident[1:]}: {pair.title}, {steps} M steps\n"
               f"(the paper's data, Table {7 if steps == 50 else 8})")
    return plot_improvements(paper_improvements(ident), heading, pair.colour, ax=ax)


def figure_ident(name: str, steps: int) -> str:
    """The paper's figure of comparison ``name`` after ``steps`` million steps, e.g. "F1" for ("rdn_vs_lstm", 50)."""
    if (name, steps) not in FIGURES.values():
        raise ValueError(f"the paper's figures compare {list(COMPARISONS)} after {STEPS} million steps, "
                         f"not {name!r} after {steps!r}")
    return next(i for i, f in FIGURES.items() if f == (name, steps))


def plot_comparisons(df: pd.DataFrame, similar: float = SIMILAR):
    """Our runs' relative improvements (``sweeps.comparisons``): a panel per comparison, a bar per game at the
    largest frames tested, in the colours of the paper's figures."""
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys(df.comparison))
    columns = min(3, len(names))
    rows_of_panels = -(-len(names) // columns)
    fig, axes = plt.subplots(rows_of_panels, columns, squeeze=False,
                             figsize=(4.5 * columns, rows_of_panels * (0.3 * df.game.nunique() + 1.8)))
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        rows = df[df.comparison == name]
        rows = rows[rows.frames == rows.frames.max()].sort_values("improvement", ascending=False)
        rows = rows.assign(game=rows.game.map(title))
        plot_improvements(rows, f"{COMPARISONS[name].title}\n({int(rows.frames.iloc[0]):,} frames)",
                          COMPARISONS[name].colour, similar, ax=ax)
    return fig


def plot_learning_curves(curves: pd.DataFrame, baselines: pd.DataFrame | None = None):
    """Training score (the mean of the last training games) against frames, a panel per game, a line per core
    (mean over seeds, band: the lowest to the highest seed); the random policy's test score dashed."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    games = list(dict.fromkeys(curves.game))
    df = curves.assign(core_label=curves.core.map(CORE_LABELS), frames_M=curves.frames / 1e6)
    order = [CORE_LABELS[c] for c in CORE_LABELS if c in set(df.core)]
    fig, axes = plt.subplots(1, len(games), figsize=(5 * len(games), 3.8), squeeze=False)
    for ax, game in zip(axes[0], games):
        sns.lineplot(df[df.game == game], x="frames_M", y="episode_return", hue="core_label", hue_order=order,
                     errorbar=("pi", 100), ax=ax)
        if baselines is not None:
            random = baselines.set_index("game").score[game]
            ax.axhline(random, color="0.4", linestyle="--", linewidth=1, label="random policy (test)")
        ax.set(title=title(game), xlabel="frames (millions of environment steps)",
               ylabel="training score")
        ax.legend(title=None, fontsize="small")
    fig.tight_layout()
    return fig


# --- The text's counts ------------------------------------------------------------------------------------------

CATEGORIES = {
    "better": "r > τ: ours better (clearly)",
    "worse": "r < −τ: the baseline better (clearly)",
    "similar": "|r| ≤ τ: similar scores",
    "not_worse": "r ≥ −τ: ours matches or outperforms the baseline",
    "gap_shrinks": "|r| at 200 M ≤ |r| at 50 M (no threshold)",
}


@dataclass(frozen=True)
class Statement:
    """One statement of the text about a figure: ``count`` games (None: the text gives no number) fall in
    ``category`` (CATEGORIES), among them ``games`` where the text names some. ``threshold``: τ where the text
    states it (None: the inferred ``SIMILAR``). ``location``: section and paragraph (the transcription has no
    page numbers)."""
    ident: str
    figure: str
    location: str
    quote: str
    category: str
    count: int | None
    games: tuple[str, ...] = ()
    threshold: float | None = None


_MAIN = "Sec. 4.4, ¶ Main experiments"
_LARGER = "Sec. 4.4, ¶ Experiments with larger models"
STATEMENTS = (
    Statement("F1a", "F1", _MAIN, "In 12 games, the RDN yields improvements over LSTM", "better", 12),
    Statement("F1b", "F1", _MAIN, "whereas in 3 games, the LSTM performs better", "worse", 3),
    Statement("F1c", "F1", _MAIN, "In the remaining 5 games, both reach similar scores", "similar", 5),
    Statement("F2a", "F2", _MAIN, "With more training, the LSTM surpasses the performance of the RDN in Battlezone, "
              "Gopher, Seaquest and Zaxxon", "worse", None, ("Battlezone", "Gopher", "Seaquest", "Zaxxon")),
    Statement("F2b", "F2", _MAIN, "while the RDN catches up in Up'N Down and Kung-Fu Master", "gap_shrinks", None,
              ("Up'n Down", "Kung-Fu Master")),
    Statement("F2c", "F2", _MAIN, "there are 6 games in which LSTM clearly outperforms RDN at 200 M steps", "worse", 6),
    Statement("F2d", "F2", _MAIN, "whereas in 9 games the result is the opposite", "better", 9),
    Statement("F2e", "F2", _LARGER, "games where the LSTM dominates: Battlezone, Berzerk, Gopher, and Seaquest "
              "(See Fig. 2)", "worse", None, ("Battlezone", "Berzerk", "Gopher", "Seaquest")),
    Statement("F3a", "F3", "App. C, ¶ Feedforward vs. LSTM", "At 50 M steps (Figure 3), there are 8 games in which "
              "the feedforward baseline clearly outperforms the LSTM", "better", 8),
    Statement("F3b", "F3", "App. C, ¶ Feedforward vs. LSTM", "and in 8 other games the trend is reversed", "worse", 8),
    Statement("F4a", "F4", "App. C, ¶ Feedforward vs. LSTM", "At 200 M steps (Figure 4), the LSTM performs clearly "
              "better in 10 games", "worse", 10),
    Statement("F4b", "F4", "App. C, ¶ Feedforward vs. LSTM", "whereas the feedforward net clearly dominates only "
              "in 4 games", "better", 4),
    Statement("F5a", "F5", "App. C, ¶ RDN vs. Linear Transformer", "As shown in Figures 5 and 6, the Recurrent "
              "Delta Net matches or outperforms the Linear Transformer on all games except for two", "not_worse", 18),
    Statement("F6a", "F6", "App. C, ¶ RDN vs. Linear Transformer", "As shown in Figures 5 and 6, the Recurrent "
              "Delta Net matches or outperforms the Linear Transformer on all games except for two", "not_worse", 18),
    Statement("F8a", "F8", "App. C, ¶ RDN vs. Delta Net", "the RDN performs equally well or better than the "
              "baseline Delta Net on 13 games at 200 M steps", "not_worse", 13),
    Statement("F8b", "F8", "App. C, ¶ RDN vs. Delta Net", "there are also 7 games where the Delta Net is better",
              "worse", 7),
    Statement("F9a", "F9", "App. C, ¶ Delta RNN vs. LSTM", "the Delta RNN clearly outperforms the LSTM on a few "
              "games at 50 M steps", "better", None),
    Statement("F10a", "F10", "App. C, ¶ Delta RNN vs. LSTM", "However, the performance gaps reduce across all "
              "games after 200 M steps", "gap_shrinks", 20),
    Statement("F10b", "F10", "App. C, ¶ Delta RNN vs. LSTM", "Overall, the performance is close in 7 games",
              "similar", 7),
    Statement("F10c", "F10", "App. C, ¶ Delta RNN vs. LSTM", "in favour of the LSTM in 8 games", "worse", 8),
    Statement("F10d", "F10", "App. C, ¶ Delta RNN vs. LSTM", "and in favour of the Delta RNN in 5 games", "better", 5),
    Statement("F12a", "F12", "App. C, ¶ RDN vs. Delta RNN", "In 16 games, the relative performance gap is within "
              "50%", "similar", 16, threshold=0.5),
    Statement("F12b", "F12", "App. C, ¶ RDN vs. Delta RNN", "In one game (Seaquest), the Delta RNN outperforms the "
              "RDN", "worse", 1, ("Seaquest",), threshold=0.5),
    Statement("F12c", "F12", "App. C, ¶ RDN vs. Delta RNN", "In 3 games, the RDN clearly outperforms the Delta RNN "
              "at 200 M steps", "better", 3, threshold=0.5),
)


@lru_cache(maxsize=None)
def _improvements(ident: str) -> pd.Series:
    """r per game of Figure ``ident``, read once (the threshold scans ask for it thousands of times)."""
    return paper_improvements(ident).set_index("game").improvement


def in_category(ident: str, category: str, threshold: float) -> pd.Series:
    """Whether each game of Figure ``ident`` is in ``category`` (CATEGORIES) at τ = ``threshold``."""
    r = _improvements(ident)
    if category == "gap_shrinks":
        earlier = _improvements(figure_ident(figure_of(ident)[0], 50))
        return r.abs() <= earlier.reindex(r.index).abs()
    rules = {"better": r > threshold, "worse": r < -threshold, "similar": r.abs() <= threshold,
             "not_worse": r >= -threshold}
    if category not in rules:
        raise ValueError(f"category must be one of {list(CATEGORIES)}, got {category!r}")
    return rules[category]


def _matches(statement: Statement, members: pd.Series) -> bool | None:
    """Whether the games in the category agree with the statement: its count, and the games it names."""
    if statement.count is None and not statement.games:
        return None
    count_ok = statement.count is None or int(members.sum()) == statement.count
    return bool(count_ok and all(members[g] for g in statement.games))


def _breakpoints() -> np.ndarray:
    """Every |r| of every figure, and 0: the thresholds where some game changes category."""
    return np.unique(np.concatenate([[0.0], *[_improvements(i).abs().values for i in FIGURES]]))


def threshold_interval(statement: Statement) -> tuple[float, float] | None:
    """The thresholds τ, an interval [low, high), at which the paper's scores give ``statement`` (its count and
    named games), whatever τ it states itself; None where no τ does or the statement does not depend on τ. A
    game's category changes only at τ = |r|, so τ is tried at every |r| of every figure, each standing for the
    interval up to the next one."""
    if statement.category == "gap_shrinks" or (statement.count is None and not statement.games):
        return None
    points = _breakpoints()
    ok = [bool(_matches(statement, in_category(statement.figure, statement.category, t))) for t in points]
    if not any(ok):
        return None
    first = ok.index(True)
    last = len(ok) - 1 - ok[::-1].index(True)   # the categories' counts are monotone in τ: one interval
    return float(points[first]), float(points[last + 1]) if last + 1 < len(points) else float("inf")


def derived_counts(threshold: float = SIMILAR) -> pd.DataFrame:
    """One row per statement of the text (STATEMENTS): what it states, what the paper's scores give at τ =
    ``threshold`` (or the statement's own τ), whether they agree (None: a statement without a number or named
    games), and the interval of τ that would reproduce it."""
    rows = []
    for s in STATEMENTS:
        tau = threshold if s.threshold is None else s.threshold
        members = in_category(s.figure, s.category, tau)
        interval = threshold_interval(s)
        rows.append({"statement": s.ident, "figure": s.figure, "location": s.location, "text": s.quote,
                     "category": s.category, "tau": None if s.category == "gap_shrinks" else tau,
                     "stated": s.count, "derived": int(members.sum()), "named_games": ", ".join(s.games),
                     "games_in_category": ", ".join(members.index[members]), "match": _matches(s, members),
                     "tau_range": "" if interval is None else f"[{100 * interval[0]:.2f}%, {100 * interval[1]:.2f}%)"})
    return pd.DataFrame(rows).astype({"stated": "Int64"})


def best_thresholds() -> pd.DataFrame:
    """The intervals of τ that reproduce the most statements depending on τ (those without their own threshold):
    low, high (τ ∈ [low, high)), how many statements match of how many, and the ones that do not."""
    statements = [s for s in STATEMENTS if s.threshold is None and s.category != "gap_shrinks"
                  and (s.count is not None or s.games)]
    points = _breakpoints()
    results = [[bool(_matches(s, in_category(s.figure, s.category, t))) for s in statements] for t in points]
    best = max(sum(r) for r in results)
    rows = []
    for i, r in enumerate(results):
        if sum(r) != best:
            continue
        high = float(points[i + 1]) if i + 1 < len(points) else float("inf")
        failing = ", ".join(s.ident for s, ok in zip(statements, r) if not ok)
        if rows and rows[-1]["high"] == points[i] and rows[-1]["not_matched"] == failing:
            rows[-1]["high"] = high   # the same statements match on the next interval: one interval
        else:
            rows.append({"low": float(points[i]), "high": high, "matched": best, "of": len(statements),
                         "not_matched": failing})
    return pd.DataFrame(rows)
