"""The Atari runs of a scale (RFWP Sec. 4.4, App. C) as tidy DataFrames: every game × core of the preset, trained
and tested through ``trainer.run``, with the uniformly random policy tested the same way on each game.

    recs = records("cpu", workers=1)       # (point, seed, RunRecord) of every run, trained where missing
    tests = scores(recs)                   # one row per test of every run (the final one, and those at test_at)
    test_policies(recs)                    # every run's final test with greedy and with sampled actions
    table = summary(tests)                 # mean over seeds per game, core and frames
    comparisons(table)                     # relative improvements (figures.relative_improvement) of our runs
    random_baselines("cpu"), learning_curves(recs), throughput(recs)

Frames are environment steps (agent steps of 4 emulator frames), the paper's "environmental steps".
"""
from __future__ import annotations

import pandas as pd

import rfwp.paper
from rfwp import analysis
from rfwp.tasks.atari.actors import env_seed
from rfwp.tasks.atari.agent import FAST_WEIGHT_CORES, parameter_table
from rfwp.tasks.atari.evaluation import TEST_POLICIES, random_baseline, test_key
from rfwp.tasks.atari.figures import (COMPARISONS, CORE_LABELS, SIMILAR, TABLE_COLUMNS, game_titles,
                                      relative_improvement)
from rfwp.tasks.atari.presets import preset
from rfwp.tasks.atari.trainer import TEST_SEED_KEY, config, run

PAPER_FRAMES = {"T3": 200_000_000, "T7": 50_000_000, "T8": 200_000_000}


def parameters(num_actions: int = 6, encoder: str = "large") -> pd.DataFrame:
    """The agents' parameter counts (millions) beside Table 7's caption and Sec. 4.4's larger RDN
    (``agent.parameter_table``): core, size (layers × width, d_ff of a fast weight core), ours, paper, and
    whether ours rounds to the paper's one decimal."""
    rows = []
    for core, model, ours, paper in parameter_table(num_actions, encoder):
        size = f"{model.n_layers} × {model.d_model}, d_ff {model.d_ff}" if core in FAST_WEIGHT_CORES else ""
        rows.append({"core": CORE_LABELS[core], "size": size, "ours_M": round(ours / 1e6, 3), "paper_M": paper,
                     "rounds_to_paper": round(ours / 1e6, 1) == paper})
    return pd.DataFrame(rows)


def points(scale: str) -> list[dict]:
    """Every game × core of the scale's preset."""
    p = preset(scale)
    return [{"game": game, "core": core, "scale": scale} for game in p.games for core in p.cores]


def records(scale: str, seeds=None, workers: int = 1) -> list[tuple[dict, int, object]]:
    """(point, seed, RunRecord) of every run of ``points(scale)`` with ``seeds`` (None: the preset's),
    trained in ``workers`` processes where there is no complete record (``rfwp.analysis.sweep_records``)."""
    return analysis.sweep_records(run, points(scale), seeds or preset(scale).seeds, workers=workers, desc="Atari")


def scores(recs) -> pd.DataFrame:
    """One row per test of every run: game, core, seed, frames (trained on before the test), final (the test after
    the whole budget, else one at ``test_at``), score and std (the paper's protocol: mean and standard deviation
    of the repetitions' mean scores, evaluation.py) and capped (games stopped by the safety cap)."""
    rows = []
    for point, seed, record in recs:
        trained = int(record.history.frames.iloc[-1])
        tests = [(milestone, f"_at_{milestone}") for milestone in record.config["test_at"]] + [(trained, "")]
        for frames, suffix in tests:
            if f"test_score{suffix}" in record.final:   # a milestone beyond the budget is never tested
                rows.append({"game": point["game"], "core": point["core"], "seed": seed, "frames": frames,
                             "final": suffix == "", "score": record.final[f"test_score{suffix}"],
                             "std": record.final[f"test_score_std{suffix}"],
                             "capped": int(record.final[f"test_capped{suffix}"])})
    return pd.DataFrame(rows)


def test_policies(recs) -> pd.DataFrame:
    """One row per run's final test under each policy (evaluation.TEST_POLICIES): game, core, seed, policy,
    headline (the scale's test policy, the one ``scores`` reports), score, std and capped; the same games for
    both policies."""
    rows = []
    for point, seed, record in recs:
        for name in TEST_POLICIES:
            test = test_key(name, record.config["test_policy"])
            rows.append({"game": point["game"], "core": point["core"], "seed": seed, "policy": name,
                         "headline": test == "test", "score": record.final[f"{test}_score"],
                         "std": record.final[f"{test}_score_std"], "capped": int(record.final[f"{test}_capped"])})
    return pd.DataFrame(rows)


def summary(tests: pd.DataFrame) -> pd.DataFrame:
    """Per game, core and frames: ``score`` the mean over seeds, ``std`` the mean over seeds of each test's std
    (the spread of repetition means, as Tables 7 and 8's ±), ``seed_std`` the std over seeds (NaN with one),
    ``seeds`` and ``capped`` (summed)."""
    grouped = tests.groupby(["game", "core", "frames"], sort=False)
    return grouped.agg(score=("score", "mean"), std=("std", "mean"), seed_std=("score", "std"),
                       seeds=("seed", "nunique"), capped=("capped", "sum")).reset_index()


def random_baselines(scale: str) -> pd.DataFrame:
    """The uniformly random policy on every game of the scale, tested with the runs' protocol and action space
    (the games the agents of seed 0 are tested on): game, score, std, capped."""
    p = preset(scale)
    rows = []
    for game in p.games:
        c = config(game, p.cores[0], scale)   # every core has the game's action space and test protocol
        result = random_baseline(game, c.num_actions, episodes=c.test_episodes, repetitions=c.test_repetitions,
                                 seed=env_seed(0, TEST_SEED_KEY), max_steps=c.test_max_steps)
        rows.append({"game": game, "score": result.mean, "std": result.std, "capped": result.capped})
    return pd.DataFrame(rows)


def learning_curves(recs) -> pd.DataFrame:
    """One row per evaluation of every run: game, core, seed, frames, wall_time, episode_return (the mean score
    of the last training games, NaN before the first ends) and episodes (games ended so far)."""
    columns = ["frames", "wall_time", "episode_return", "episodes"]
    return pd.concat([record.history[columns].assign(game=point["game"], core=point["core"], seed=seed)
                      for point, seed, record in recs], ignore_index=True)


def throughput(recs) -> pd.DataFrame:
    """One row per run: frames trained, train_seconds (training alone, to the last evaluation), frames_per_s
    from them, and total_seconds (with the tests)."""
    rows = []
    for point, seed, record in recs:
        last = record.history.iloc[-1]
        rows.append({"game": point["game"], "core": point["core"], "seed": seed, "frames": int(last.frames),
                     "train_seconds": float(last.wall_time), "frames_per_s": float(last.frames / last.wall_time),
                     "total_seconds": float(record.wall_time)})
    return pd.DataFrame(rows)


def comparisons(table: pd.DataFrame, similar: float = SIMILAR) -> pd.DataFrame:
    """Figures 1-12's comparisons among the cores run (``summary`` rows): per comparison, game and frames, the
    two mean scores, the relative improvement r (figures.relative_improvement) and ``verdict``: "better" (r >
    ``similar``), "worse" (r < −similar) or "similar"."""
    frames = []
    for name, pair in COMPARISONS.items():
        ours = table[table.core == pair.ours].set_index(["game", "frames"]).score
        baseline = table[table.core == pair.baseline].set_index(["game", "frames"]).score
        both = pd.concat({"ours": ours, "baseline": baseline}, axis=1, join="inner").reset_index()
        if both.empty:
            continue
        r = relative_improvement(both.ours, both.baseline)
        verdict = ["better" if x > similar else "worse" if x < -similar else "similar" for x in r]
        frames.append(both.assign(comparison=name, title=pair.title, improvement=r, verdict=verdict))
    columns = ["comparison", "title", "game", "frames", "ours", "baseline", "improvement", "verdict"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def beside_paper(table: pd.DataFrame, ident: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ours, the paper's) in the layout of the paper's Table ``ident`` (T7, T8: a row per game, a column and its
    ``_std`` per core; T3: a row per model, a column and its ``_std`` per game), each row with the ``frames`` its
    scores were tested at; ours (``summary`` rows) also with ``seeds``. Our rows cover the games and cores run,
    for T3 those of its games and models (the LSTM and the RDN; the larger RDN is not run)."""
    if ident not in PAPER_FRAMES:
        raise ValueError(f"ident must be one of {sorted(PAPER_FRAMES)}, got {ident!r}")
    paper = rfwp.paper.table("rfwp", ident).drop(columns="source")
    paper.insert(1, "frames", PAPER_FRAMES[ident])
    titled = table.assign(title=table.game.map(game_titles()), column=table.core.map(TABLE_COLUMNS)).dropna(
        subset=["title"])   # the paper's games only
    if ident == "T3":
        models = {"lstm": "LSTM", "recurrent_delta_net": "RDN"}
        titled = titled[titled.core.isin(models) & titled.title.str.lower().isin(paper.columns)]
        titled = titled.assign(row=titled.core.map(models), column=titled.title.str.lower())
        index = "model"
    else:
        titled = titled.assign(row=titled.title)
        index = "game"
    if titled.empty:
        return pd.DataFrame(columns=[*paper.columns, "seeds"]), paper
    wide = titled.pivot(index=["row", "frames"], columns="column", values=["score", "std"])
    order = list(paper[index])
    rows = sorted(wide.index, key=lambda key: (order.index(key[0]), key[1]))   # the paper's order of rows
    ours = pd.DataFrame(index=pd.MultiIndex.from_tuples(rows, names=[index, "frames"]))
    for column in [c for c in paper.columns[2:] if not c.endswith("_std")]:
        if ("score", column) in wide.columns:
            ours[column], ours[f"{column}_std"] = wide["score", column], wide["std", column]
    ours["seeds"] = titled.groupby(["row", "frames"]).seeds.min()
    return ours.reset_index(), paper
