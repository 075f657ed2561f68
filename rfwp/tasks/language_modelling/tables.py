"""The language modelling notebook's tables and figure, from the runs of ``sweeps.runs`` (one row per run, its
final evaluation), each beside the paper's numbers (which are WikiText-103's: another corpus than ours)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

import rfwp.paper
from rfwp.models import DELTA_MLP_FAST_LAYERS, MODELS, TABLE1_MODELS, TABLE1_VERSIONS, ModelConfig
from rfwp.tasks.language_modelling.presets import (WIKITEXT103_VOCABULARY, LanguageModellingScale, lm_small_config,
                                                   model_config)
from rfwp.tasks.language_modelling.trainer import parameter_count
from rfwp.train.runs import REPO_ROOT


def _context(full_context: bool) -> str:
    return "full" if full_context else "256"


def unused_authors_parameters(model: str, config: ModelConfig) -> int:
    """Parameters the authors' code allocates but never uses, which Table 1 counts: their Delta MLP's slow
    projection gives twice the fast layers' key/value dims and uses half (original-code.md §3). Per layer and head
    each pair d_head → d_hidden → d_head has keys and values of d_head + d_hidden each, d_hidden = 4·d_model /
    n_heads, 2 pairs in version A (4 fast layers), 1 in B; the unused half has as many bias-free weights."""
    if model != "delta_mlp":
        return 0
    d_head, d_hidden = config.head_size, 4 * config.d_model // config.n_heads
    pairs = DELTA_MLP_FAST_LAYERS[config.version or TABLE1_VERSIONS[model]] // 2
    return config.n_layers * config.n_heads * pairs * 2 * (d_head + d_hidden) * config.d_model


def parameters(scale: LanguageModellingScale, vocab_size: int) -> pd.DataFrame:
    """Parameters (millions) of every Table 1 model at the paper's configuration on WikiText-103's vocabulary,
    counted as the authors' code counts them (``unused_authors_parameters``), beside Table 1's, and at
    ``scale``'s on a vocabulary of ``vocab_size`` words (ours: what the model has)."""
    paper = rfwp.paper.table("rfwp", "T1").drop_duplicates("model").set_index("model")["params_M"]
    rows = []
    for model in TABLE1_MODELS:
        config = lm_small_config(model, WIKITEXT103_VOCABULARY)
        ours = (parameter_count(model, config) + unused_authors_parameters(model, config)) / 1e6
        name = MODELS[model].name
        rows.append({"model": name, "paper_config_params_M": round(ours, 1), "paper_params_M": paper[name],
                     "difference_percent": round(100 * (ours - paper[name]) / paper[name], 1),
                     "scale_params_M": round(parameter_count(model, model_config(
                         model, scale.architecture, vocab_size)) / 1e6, 2)})
    return pd.DataFrame(rows)


def table1(runs: pd.DataFrame) -> pd.DataFrame:
    """RFWP Table 1: our valid and test perplexity of each model and context beside the paper's."""
    paper = rfwp.paper.table("rfwp", "T1").set_index(["model", "context"])
    rows = []
    for _, run in runs[runs.feature_map == "elu"].iterrows():
        key = (MODELS[run.model].name, _context(run.full_context))
        if key not in paper.index:
            continue
        rows.append({"model": key[0], "context": key[1], "valid_ppl": round(run.valid_perplexity, 1),
                     "test_ppl": round(run.test_perplexity, 1), "paper_valid_ppl": paper.loc[key, "valid_ppl"],
                     "paper_test_ppl": paper.loc[key, "test_ppl"]})
    return pd.DataFrame(rows)


def icml_table2(runs: pd.DataFrame) -> pd.DataFrame:
    """ICML Table 2 (small setting): sum against delta rule, for φ = ELU + 1 (Linear) and FAVOR+ (Performer)."""
    paper = rfwp.paper.table("icml", "T2").set_index(["model", "update"])
    kinds = {("linear_transformer", "elu"): ("Linear Transformer", "sum"),
             ("delta_net", "elu"): ("Delta Network", "delta"),
             ("linear_transformer", "favor"): ("Performer", "sum"), ("delta_net", "favor"): ("Performer", "delta")}
    rows = []
    for _, run in runs[~runs.full_context].iterrows():
        key = kinds.get((run.model, run.feature_map))
        if key is None:
            continue
        rows.append({"model": key[0], "update": key[1], "valid_ppl": round(run.valid_perplexity, 1),
                     "test_ppl": round(run.test_perplexity, 1),
                     "paper_small_valid_ppl": paper.loc[key, "small_valid_ppl"],
                     "paper_small_test_ppl": paper.loc[key, "small_test_ppl"]})
    return pd.DataFrame(rows)


def state_size(model: str, scale: LanguageModellingScale, window: tuple[int, int] | None = None) -> int:
    """ICML App. F's state size (numbers): per layer, heads × d_key × d_value of the fast weights, or for
    Transformer-XL (memory + target segment length) × (total key + total value dimension); times the layers.
    (The appendix writes "memory × target", but its sizes are those of the sum.)"""
    c = scale.architecture
    if model == "transformer_xl":
        memory, target = window
        return (memory + target) * 2 * c.n_heads * c.head_size * c.n_layers
    return c.n_heads * c.head_size ** 2 * c.n_layers


def icml_table4(runs: pd.DataFrame, scale: LanguageModellingScale) -> pd.DataFrame:
    """ICML Table 4: models trained and evaluated without truncating the context, with their state sizes;
    Transformer-XL at each (memory, target) window of the scale. The paper's rows (medium setting) beside."""
    rows = []
    for _, run in runs[runs.full_context & runs.model.isin(["linear_transformer", "delta_net"])
                       & (runs.feature_map == "elu")].iterrows():
        rows.append({"model": MODELS[run.model].name, "window": "", "state_size_M": state_size(run.model, scale) / 1e6,
                     "valid_ppl": round(run.valid_perplexity, 1), "test_ppl": round(run.test_perplexity, 1)})
    for _, run in runs[runs.model == "transformer_xl"].iterrows():
        for memory, target in scale.transformer_xl_windows:
            rows.append({"model": "Transformer-XL", "window": f"{memory}/{target}",
                         "state_size_M": state_size("transformer_xl", scale, (memory, target)) / 1e6, "valid_ppl": None,
                         "test_ppl": round(run[f"test_perplexity_memory{memory}_target{target}"], 1)})
    return pd.DataFrame(rows)


def stride_check(runs: pd.DataFrame, stride: int, tokens: int) -> pd.DataFrame:
    """Test perplexity of every truncated run on the first ``tokens`` test tokens by the sliding window at stride 1
    (the paper's) and at ``stride`` (the scale's)."""
    one, ours = f"test_perplexity_stride1_first{tokens}", f"test_perplexity_stride{stride}_first{tokens}"
    if one not in runs:
        return pd.DataFrame()
    truncated = runs[~runs.full_context].dropna(subset=[one])
    return pd.DataFrame({"model": truncated.model.map(lambda m: MODELS[m].name), "feature_map": truncated.feature_map,
                         "stride_1": truncated[one].round(2), f"stride_{stride}": truncated[ours].round(2),
                         "difference_percent": (100 * (truncated[ours] / truncated[one] - 1)).round(2)}
                        ).reset_index(drop=True)


def plot_curves(curves: pd.DataFrame):
    """Validation perplexity during training (the segment-wise validation loss, exponentiated) against training
    tokens, one line per run."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns
    df = curves.assign(run=[f"{MODELS[m].name}{' (FAVOR+)' if f == 'favor' else ''}{' + full context' if c else ''}"
                            for m, f, c in zip(curves.model, curves.feature_map, curves.full_context)],
                       tokens_M=curves.tokens / 1e6, perplexity=np.exp(curves.valid_loss))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.lineplot(df, x="tokens_M", y="perplexity", hue="run", ax=ax)
    ax.set(xlabel="training tokens (millions)", ylabel="validation perplexity", yscale="log")
    ax.legend(title=None, fontsize="x-small", ncol=2)
    fig.tight_layout()
    return fig


BENCHMARK = REPO_ROOT / "results" / "benchmarks" / "lm.json"


def benchmark(path: str | Path = BENCHMARK) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The speed and memory tables ``python -m benchmarks.lm`` wrote (default: results/benchmarks/lm.json)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: run `python -m benchmarks.lm` (or `make benchmark`) first")
    result = json.loads(path.read_text())
    speed = pd.DataFrame(result["speed"]).round({"params_M": 1, "tokens_per_s": 0, "ratio_to_transformer": 2,
                                                 "paper_ratio_to_transformer": 2})
    return speed, pd.DataFrame(result["memory"]).round({"peak_mem_MB": 1, "state_MB": 3})


def samples(runs: pd.DataFrame) -> tuple[str, list[str]]:
    """The run with the lowest test perplexity (its label) and its sampled continuations."""
    best = runs.loc[runs.test_perplexity.idxmin()]
    label = f"{MODELS[best.model].name}{' + full context' if best.full_context else ''}"
    texts = [best[c] for c in sorted(c for c in runs if c.startswith("sample_")) if isinstance(best[c], str)]
    return f"{label} (test perplexity {best.test_perplexity:.1f})", texts


def table4(runs: pd.DataFrame) -> pd.DataFrame:
    """RFWP Table 4: the versions of the Delta RNN, Delta LSTM and Delta MLP, our perplexities beside the paper's,
    with the paper configuration's parameter count as the authors' code counts it (the paper's) and as our model
    has it (``in_use``: without the Delta MLP's unused half of its slow projection)."""
    paper = rfwp.paper.table("rfwp", "T4").set_index(["model", "version"])
    rows = []
    versions = runs[runs.model.isin(["delta_rnn", "delta_lstm", "delta_mlp"]) & ~runs.full_context]
    for _, run in versions.iterrows():
        version = run.version if isinstance(run.version, str) else TABLE1_VERSIONS[run.model]
        config = lm_small_config(run.model, WIKITEXT103_VOCABULARY, version)
        in_use = parameter_count(run.model, config)
        params = (in_use + unused_authors_parameters(run.model, config)) / 1e6
        key = (MODELS[run.model].name, version)
        rows.append({"model": key[0], "version": version, "valid_ppl": round(run.valid_perplexity, 1),
                     "test_ppl": round(run.test_perplexity, 1), "paper_config_params_M": round(params, 1),
                     "paper_config_params_M_in_use": round(in_use / 1e6, 1),
                     "paper_valid_ppl": paper.loc[key, "valid_ppl"], "paper_test_ppl": paper.loc[key, "test_ppl"],
                     "paper_params_M": paper.loc[key, "params_M"]})
    order = {"Delta RNN": 0, "Delta LSTM": 1, "Delta MLP": 2}
    table = pd.DataFrame(rows)
    return (table.assign(order=table.model.map(order)).sort_values(["order", "version"]).drop(columns="order")
            .reset_index(drop=True))


def icml_table3(runs: pd.DataFrame) -> pd.DataFrame:
    """ICML Table 3: the Delta Net with and without absolute positions and attention normalisation."""
    paper = rfwp.paper.table("icml", "T3").set_index(["position_encoding", "attention_normalisation"])
    delta_net = runs[(runs.model == "delta_net") & ~runs.full_context & (runs.feature_map == "elu")]
    rows = []
    for _, run in delta_net.iterrows():
        positions = run.positional_encoding if isinstance(run.positional_encoding, bool) else True
        key = ("yes" if positions else "no", "yes" if run.attention_normalisation else "no")
        rows.append({"position_encoding": key[0], "attention_normalisation": key[1],
                     "valid_ppl": round(run.valid_perplexity, 1), "test_ppl": round(run.test_perplexity, 1),
                     "paper_medium_valid_ppl": paper.loc[key, "valid_ppl"],
                     "paper_medium_test_ppl": paper.loc[key, "test_ppl"]})
    return pd.DataFrame(rows).sort_values(["attention_normalisation", "position_encoding"],
                                          ascending=False).reset_index(drop=True)


def icml_table5(runs: pd.DataFrame, m: int, nu: int) -> pd.DataFrame:
    """ICML Table 5: the Performer (FAVOR+ with ``m`` features) and DPFP-``nu`` with the sum rule (the Linear
    Transformer's) and the delta rule (the Delta Net's), beside the paper's."""
    paper = rfwp.paper.table("icml", "T5").set_index(["model", "update"])
    rows = []
    for feature_map, name, field, value in (("favor", "Performer", "m", m), ("dpfp", "DPFP", "nu", nu)):
        chosen = runs[(runs.feature_map == feature_map) & (runs[field] == value) & ~runs.full_context]
        for _, run in chosen.iterrows():
            update = {"linear_transformer": "sum", "delta_net": "delta"}[run.model]
            rows.append({"model": name, "update": update, "valid_ppl": round(run.valid_perplexity, 1),
                         "test_ppl": round(run.test_perplexity, 1),
                         "paper_valid_ppl": paper.loc[(name, update), "valid_ppl"],
                         "paper_test_ppl": paper.loc[(name, update), "test_ppl"]})
    return pd.DataFrame(rows)
