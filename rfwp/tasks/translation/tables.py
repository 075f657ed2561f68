"""The translation notebook's tables, from the runs of ``sweeps.runs`` (one row per run, its selected checkpoint's
evaluation), beside the paper's numbers, which are WMT14 English→German's: another corpus than the Bible's."""
from __future__ import annotations

from dataclasses import replace
from itertools import count

import pandas as pd

import rfwp.paper
from rfwp.tasks.translation.model import TRANSFORMER_BIG, parameter_count
from rfwp.tasks.translation.presets import PAPER_NAMES, TABLE1_SETTINGS, TranslationScale, attention_config


def parameters(scale: TranslationScale) -> pd.DataFrame:
    """Every model of Table 1: its m or ν, and its parameters (millions) at the paper's configuration (the big
    Transformer on App. E's 32 K joint vocabulary) and at ``scale``'s. φ has no parameters, so every attention has
    as many as the softmax Transformer; the paper states no count."""
    rows = []
    for attention, d_dot in scale.settings:
        paper = attention_config(TRANSFORMER_BIG, attention, d_dot)
        ours = attention_config(replace(scale.architecture, vocabulary=scale.vocabulary), attention, d_dot)
        rows.append({"model": PAPER_NAMES[attention], "d_dot": d_dot, "d_key": paper.d_key,
                     "performer_m": paper.m if attention == "performer" else None,
                     "dpfp_nu": paper.nu if attention == "dpfp" else None,
                     "paper_config_params_M": round(parameter_count(paper) / 1e6, 1),
                     "scale_params_M": round(parameter_count(ours) / 1e6, 2)})
    return pd.DataFrame(rows).astype({"performer_m": "Int64", "dpfp_nu": "Int64"})   # blank where not that model's


def table6() -> pd.DataFrame:
    """ICML Table 6: for each d_dot of the paper's table, the Performer's m and DPFP's ν that ``attention_config``
    gives at d_key = 64, and the d_dot of the models built with them (``TranslationConfig.d_dot``, the size of
    their φ's output)."""
    rows = []
    for d_dot in rfwp.paper.table("icml", "T6").d_dot:
        performer = attention_config(TRANSFORMER_BIG, "performer", int(d_dot))
        dpfp = attention_config(TRANSFORMER_BIG, "dpfp", int(d_dot))
        rows.append({"d_dot": int(d_dot), "performer_m": performer.m, "dpfp_nu": dpfp.nu,
                     "performer_d_dot_built": performer.d_dot, "dpfp_d_dot_built": dpfp.d_dot})
    return pd.DataFrame(rows).astype("Int64")   # integers, blank in the paper's rows beside them


def table1(runs: pd.DataFrame) -> pd.DataFrame:
    """ICML Table 1: our valid and test BLEU of each (attention, d_dot), the mean over its seeds, beside the paper's
    on WMT14 En-De (paper_*)."""
    paper = rfwp.paper.table("icml", "T1").set_index(["model", "d_dot"])
    order = {setting: i for i, setting in enumerate(TABLE1_SETTINGS)}   # Table 1's rows first, in its order
    rows = []
    for attention, d_dot in sorted(set(zip(runs.attention, runs.d_dot)), key=lambda s: (order.get(s, len(order)), s)):
        group = runs[(runs.attention == attention) & (runs.d_dot == d_dot)]
        key = (PAPER_NAMES[attention], d_dot)
        rows.append({"model": key[0], "d_dot": d_dot, "seeds": len(group),
                     "valid_bleu": round(group.valid_bleu.mean(), 2), "test_bleu": round(group.test_bleu.mean(), 2),
                     "paper_valid_bleu": paper.valid_bleu.get(key), "paper_test_bleu": paper.test_bleu.get(key)})
    return pd.DataFrame(rows)


def examples(runs: pd.DataFrame) -> pd.DataFrame:
    """The test translations kept in the records, of each run's lowest seed: per example its source, its reference
    and every run's hypothesis, one row each (columns example, text_of, text)."""
    first = runs[runs.seed == runs.seed.min()]
    rows = []
    for i in count():
        if f"example{i}_source" not in first:
            break
        rows += [{"example": i, "text_of": "source", "text": first[f"example{i}_source"].iloc[0]},
                 {"example": i, "text_of": "reference", "text": first[f"example{i}_reference"].iloc[0]}]
        rows += [{"example": i, "text_of": f"{PAPER_NAMES[run.attention]} {run.d_dot}",
                  "text": run[f"example{i}_hypothesis"]} for _, run in first.iterrows()]
    return pd.DataFrame(rows)
