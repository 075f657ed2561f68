"""What the two algorithmic tasks share (RFWP Sec. 4.2-4.3, App. B.2): the six models of Table 2, their
optimisers, the metrics, and one run through ``rfwp.train.execute`` with the checkpoint selected on
validation sequence accuracy.

    dataset = CodeExecutionDataset(variables=3, statements=100)
    config = AlgorithmicConfig(dataset, "delta_rnn", model_config("delta_rnn", CODE_EXECUTION, dataset),
                               optimiser_for("delta_rnn"), batch_size=64)
    record = run(config, Schedule(steps=..., eval_every=..., monitor="valid_sequence_accuracy", mode="max"),
                 seed=0, scale="paper")
    record.best["test_sequence_accuracy"]   # the test accuracy of the model selected on validation

A dataset is a frozen dataclass of the generator's arguments (``CodeExecutionDataset``, ``ListOpsDataset``):
its ``name`` names the run, ``splits()`` gives the tensors, written once under ``.cache/rfwp/data`` in the
authors' file layout by the task's own ``write`` and read back by its ``load``.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd
from torch import Tensor

from rfwp.models import MODELS as ALL_MODELS, ModelConfig, build_model
from rfwp.tasks.generated import Vocabulary
from rfwp.train import (OptimiserConfig, Schedule, SequenceTrainer, ShuffledBatches, TokenBatch, execute,
                        to_last_scored)
from rfwp.train.runs import REPO_ROOT

# RFWP Table 2's rows, in its order.
MODELS = ("lstm", "transformer", "linear_transformer", "delta_net", "delta_rnn", "recurrent_delta_net")


class Dataset(Protocol):
    """A generated dataset, named by the generator's arguments."""
    name: str

    @property
    def vocabularies(self) -> tuple[Vocabulary, Vocabulary]: ...     # inputs, outputs

    def write(self, directory: Path) -> None: ...                    # the task's files, in the authors' layout

    def load(self, directory: Path) -> dict[str, TokenBatch]: ...

    def metrics(self, logits: Tensor, batch: TokenBatch) -> dict[str, tuple[float, float]]: ...


def splits(dataset: Dataset, cache_dir: Path | None = None) -> dict[str, TokenBatch]:
    """The dataset's splits as tensors, generated and written on first
    use (into a temporary directory renamed into place, so that concurrent runs never read half a dataset)."""
    directory = Path(cache_dir or REPO_ROOT / ".cache" / "rfwp" / "data") / dataset.name
    if not directory.is_dir():
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".tmp-"))
        dataset.write(tmp)
        try:
            os.rename(tmp, directory)
        except OSError:   # another process wrote it first
            shutil.rmtree(tmp)
    return dataset.load(directory)


def sequence_accuracy(logits: Tensor, batch: TokenBatch) -> dict[str, tuple[float, float]]:
    """Sequence-level accuracy (Table 2): a sequence counts as right only if every scored position is."""
    right = (logits.argmax(-1) == batch.targets) | ~batch.mask
    return {"sequence_accuracy": (float(right.all(1).sum()), float(len(right)))}


def optimiser_for(model: str, lr: float = 3e-4) -> OptimiserConfig:
    """App. B.2 and original-code.md §4: Adam (0.9, 0.995), eps 1e-9, ``lr`` (the paper's 3e-4) with no schedule
    and no clipping; the LSTM always lr 3e-3 with gradient clipping 0.1."""
    check_model(model)
    if model == "lstm":
        return OptimiserConfig(lr=3e-3, betas=(0.9, 0.995), eps=1e-9, clip=0.1)
    return OptimiserConfig(lr=lr, betas=(0.9, 0.995), eps=1e-9)


def check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} for the algorithmic tasks; choose one of {MODELS}")


def model_config(model: str, architecture: ModelConfig, dataset: Dataset) -> ModelConfig:
    """The architecture with the dataset's vocabularies; the Linear Transformer without normalisation
    (the authors' algorithmic code, original-code.md §3)."""
    check_model(model)
    inputs, outputs = dataset.vocabularies
    config = dataclasses.replace(architecture, vocab_size=len(inputs), n_outputs=len(outputs))
    return dataclasses.replace(config, normalisation="none") if model == "linear_transformer" else config


@dataclass(frozen=True)
class AlgorithmicConfig:
    """One run: what is hashed into the run record."""
    dataset: Dataset
    model: str
    model_config: ModelConfig     # with the dataset's vocabulary sizes: see ``model_config``
    optimiser: OptimiserConfig
    batch_size: int
    eval_batch_size: int = 200

    def __post_init__(self):
        check_model(self.model)


def batches(split: TokenBatch, size: int) -> list[TokenBatch]:
    """An evaluation split in batches, each cut after its last scored position."""
    return [to_last_scored(TokenBatch(*(t[start:start + size] for t in split[:3])))
            for start in range(0, len(split.inputs), size)]


def make_trainer(config: AlgorithmicConfig, seed: int) -> SequenceTrainer:
    data = splits(config.dataset)
    train = data["train"]
    return SequenceTrainer(build_model(config.model, config.model_config), config.optimiser,
                           ShuffledBatches(train.inputs, train.targets, train.mask, config.batch_size, seed),
                           {split: batches(data[split], config.eval_batch_size) for split in ("valid", "test")},
                           metrics=config.dataset.metrics)


def selection_schedule(steps: int, eval_every: int) -> Schedule:
    """App. B.2: evaluate regularly (every epoch in the paper) and keep the model best in validation
    sequence accuracy; its test accuracy is ``record.best["test_sequence_accuracy"]``."""
    return Schedule(steps=steps, eval_every=eval_every, monitor="valid_sequence_accuracy", mode="max")


def run(name: str, config: AlgorithmicConfig, schedule: Schedule, seed: int, scale: str, **execute_kwargs):
    """One run through ``rfwp.train.execute`` (``execute_kwargs``: results_dir, cache_dir, progress, train)."""
    return execute(name, config, make_trainer, schedule, seed=seed, scale=scale, **execute_kwargs)


def parameter_counts(architecture: ModelConfig, dataset: Dataset, paper: dict[str, float]) -> pd.DataFrame:
    """Parameters of each model (millions) on ``dataset``'s vocabularies beside the paper's."""
    rows = []
    for model in MODELS:
        net = build_model(model, model_config(model, architecture, dataset))
        ours = sum(p.numel() for p in net.parameters()) / 1e6
        rows.append({"model": ALL_MODELS[model].name, "params_M": round(ours, 3), "paper_params_M": paper[model],
                     "difference_percent": round(100 * (ours - paper[model]) / paper[model], 1)})
    return pd.DataFrame(rows)



# ----------------------------------------------------------------------------------------------
# Tables of a sweep (``rfwp.analysis.sweep``: one row per run, its metrics at the selected evaluation)

def summary(runs: pd.DataFrame, setting: str, metric: str = "test_sequence_accuracy") -> pd.DataFrame:
    """Per ``setting`` value (e.g. variables) and model, in Table 2's order: ``metric`` in percent as mean, std
    (sample std, as the paper's over seeds; 0 for one seed), min and max over seeds, and the seeds' count."""
    runs = runs.assign(percent=100 * runs[metric], order=runs.model.map(MODELS.index))
    out = (runs.sort_values([setting, "order"])
           .groupby([setting, "model"], sort=False)["percent"]
           .agg(mean="mean", std=lambda x: x.std(ddof=1) if len(x) > 1 else 0.0, min="min", max="max", seeds="count")
           .reset_index())
    return out.assign(label=out.model.map(lambda m: ALL_MODELS[m].name))


def beside_paper(ours: pd.DataFrame, paper: pd.DataFrame, column: dict) -> pd.DataFrame:
    """``summary`` rows with the paper's mean and std beside them; ``column`` maps each setting value the paper
    ran to its table's column (its std in ``<column>_std``); other settings get no paper value."""
    setting = ours.columns[0]
    by_label = paper.set_index("model")
    rows = []
    for _, row in ours.iterrows():
        name = column.get(row[setting])
        rows.append({setting: row[setting], "model": row.label, "ours": f"{row['mean']:.1f} ± {row['std']:.1f}",
                     "ours_min": round(row["min"], 1), "ours_max": round(row["max"], 1), "seeds": row.seeds,
                     "paper": "" if name is None else
                     f"{by_label.loc[row.label, name]:.1f} ± {by_label.loc[row.label, name + '_std']:.1f}"})
    return pd.DataFrame(rows)


def plot_curves(histories: pd.DataFrame, setting: str, metric: str = "valid_sequence_accuracy", label: str = "",
                unit: str = "tokens"):
    """Validation ``metric`` against the scored training targets, one line per model (mean over seeds, band:
    lowest to highest seed), one panel per ``setting`` value. ``unit`` names what a history's ``tokens`` count:
    code execution scores every token, ListOps the last token of each list ("lists"). The seeds of a model are
    evaluated at the same steps but draw programs of other lengths, so an evaluation is placed at its step's mean
    count over the seeds."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    seen = histories.groupby([setting, "model", "step"]).tokens.transform("mean")
    per, prefix = (1e6, "millions") if seen.max() >= 1e6 else (1e3, "thousands")
    df = histories.assign(model_label=histories.model.map(lambda m: ALL_MODELS[m].name),
                          seen=seen / per, percent=100 * histories[metric])
    values = sorted(df[setting].unique())
    fig, axes = plt.subplots(1, len(values), figsize=(5.5 * len(values), 4), sharey=True, squeeze=False)
    order = [ALL_MODELS[m].name for m in MODELS if m in set(df.model)]
    for ax, value in zip(axes[0], values):
        sns.lineplot(df[df[setting] == value], x="seen", y="percent", hue="model_label", hue_order=order,
                     errorbar=("pi", 100), ax=ax)
        ax.set(title=f"{setting} = {value}", xlabel=f"training {unit} ({prefix})", ylabel=label or metric)
        ax.legend(title=None, fontsize="small")
    fig.tight_layout()
    return fig
