"""Code execution runs (RFWP Sec. 4.2, Tables 2, 5 and 6): the dataset as part of a run's config, its three
metrics, and one run of a model at a scale."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import Tensor

from rfwp.models import ModelConfig
from rfwp.tasks import algorithmic, generated
from rfwp.tasks.algorithmic import MODELS as ALGORITHMIC_MODELS
from rfwp.tasks.code_execution import data
from rfwp.tasks.code_execution.presets import preset
from rfwp.train import TokenBatch

NO_OUTPUT_ID = data.OUTPUTS.index[data.NO_OUTPUT]


@dataclass(frozen=True)
class CodeExecutionDataset:
    """Programs of ``statements`` statements over ``variables`` variables (App. B.1), ``sizes`` programs for
    train, valid and test, drawn from ``seed`` (the authors' 42)."""
    variables: int = 3
    statements: int = 100
    semantics: str = "correct"
    sizes: tuple[int, int, int] = generated.PAPER_SIZES
    seed: int = 42

    def __post_init__(self):
        data.check(self.variables, self.statements, self.semantics)
        generated.check_sizes(self.sizes)

    @property
    def name(self) -> str:
        return (f"code_execution/N{self.variables}-S{self.statements}-{self.semantics}-"
                f"{'-'.join(map(str, self.sizes))}-seed{self.seed}")

    @property
    def vocabularies(self) -> tuple[generated.Vocabulary, generated.Vocabulary]:
        return data.input_vocabulary(self.variables), data.OUTPUTS

    def write(self, directory: Path) -> None:
        data.write(data.generate(self.variables, self.statements, self.sizes, self.seed, self.semantics), directory)

    def load(self, directory: Path) -> dict[str, TokenBatch]:
        return data.load(directory).splits

    def metrics(self, logits: Tensor, batch: TokenBatch) -> dict[str, tuple[float, float]]:
        """Sequence accuracy (Table 2), and token accuracy at the executed prints (Table 5) and elsewhere."""
        right = logits.argmax(-1) == batch.targets
        printed = batch.mask & (batch.targets != NO_OUTPUT_ID)
        silent = batch.mask & (batch.targets == NO_OUTPUT_ID)
        return {**algorithmic.sequence_accuracy(logits, batch),
                "print_accuracy": (float(right[printed].sum()), float(printed.sum())),
                "no_output_accuracy": (float(right[silent].sum()), float(silent.sum()))}


# Table 6's architectures (App. B.2): Table 2's, the Transformer family deeper and thinner, the LSTM wider
SHAPES = {"table2": ALGORITHMIC_MODELS, "deep": ("delta_net", "delta_rnn", "recurrent_delta_net"), "wide": ("lstm",)}


def architecture(model: str, scale: str, shape: str = "table2") -> ModelConfig:
    """The architecture of ``model`` at ``scale``: Table 2's, or Table 6's "deep" (Transformer family) or "wide"
    (LSTM) one."""
    algorithmic.check_model(model)
    if model not in SHAPES.get(shape, ()):
        raise ValueError(f"shape {shape!r} is not one of {model!r}'s: choose from "
                         f"{[s for s, models in SHAPES.items() if model in models]}")
    p = preset(scale)
    if shape == "deep":
        return p.deep
    if shape == "wide":
        return replace(p.architecture, lstm_hidden=p.wide_lstm)
    return p.architecture


def config(model: str, variables: int, scale: str, semantics: str = "correct",
           shape: str = "table2") -> algorithmic.AlgorithmicConfig:
    """The run of ``model`` on programs over ``variables`` variables at ``scale``, in the architecture ``shape``."""
    p = preset(scale)
    dataset = CodeExecutionDataset(variables, p.statements, semantics, p.sizes)
    return algorithmic.AlgorithmicConfig(dataset, model,
                                         algorithmic.model_config(model, architecture(model, scale, shape), dataset),
                                         algorithmic.optimiser_for(model, p.lr), p.batch_size)


def run(model: str, variables: int, scale: str, seed: int, semantics: str = "correct", shape: str = "table2",
        **execute_kwargs):
    """One run through ``rfwp.train.execute``, named e.g. "code_execution/N3/delta_rnn" (with "-original" for the
    authors' semantics, "_deep" or "_wide" for Table 6's shapes); ``execute_kwargs``: results_dir, cache_dir,
    progress, train."""
    p = preset(scale)
    name = (f"code_execution/N{variables}/{model}" + ("" if shape == "table2" else f"_{shape}")
            + ("" if semantics == "correct" else f"-{semantics}"))
    return algorithmic.run(name, config(model, variables, scale, semantics, shape),
                           algorithmic.selection_schedule(p.steps, p.eval_every), seed, scale, **execute_kwargs)
