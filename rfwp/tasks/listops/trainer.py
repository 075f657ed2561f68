"""Sequential ListOps runs (RFWP Sec. 4.3, Table 2): the dataset as part of a run's config, its metric, and one
run of a model at a scale."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from rfwp.tasks import algorithmic, generated
from rfwp.tasks.listops import data
from rfwp.tasks.listops.presets import preset
from rfwp.train import TokenBatch

LABELS = generated.Vocabulary(data.DIGITS)


@dataclass(frozen=True)
class ListOpsDataset:
    """Lists of nesting depth exactly ``depth`` (App. B.3), ``sizes`` lists for train, valid and test, drawn
    from ``seed`` (the authors' 42)."""
    depth: int = 10
    sizes: tuple[int, int, int] = generated.PAPER_SIZES
    seed: int = 42

    def __post_init__(self):
        data.check_depth(self.depth)
        generated.check_sizes(self.sizes)

    @property
    def name(self) -> str:
        return f"listops/depth{self.depth}-{'-'.join(map(str, self.sizes))}-seed{self.seed}"

    @property
    def vocabularies(self) -> tuple[generated.Vocabulary, generated.Vocabulary]:
        return data.VOCABULARY, LABELS

    def write(self, directory: Path) -> None:
        data.write(data.generate(self.depth, self.sizes, self.seed), directory)

    def load(self, directory: Path) -> dict[str, TokenBatch]:
        return data.load(directory)

    def metrics(self, logits: Tensor, batch: TokenBatch) -> dict[str, tuple[float, float]]:
        """Accuracy of the label read at the last token (Table 2's ListOps columns): one scored position per list."""
        return algorithmic.sequence_accuracy(logits, batch)


def config(model: str, depth: int, scale: str) -> algorithmic.AlgorithmicConfig:
    """The run of ``model`` on lists of depth ``depth`` at ``scale``."""
    p = preset(scale)
    dataset = ListOpsDataset(depth, p.sizes)
    return algorithmic.AlgorithmicConfig(dataset, model, algorithmic.model_config(model, p.architecture, dataset),
                                         algorithmic.optimiser_for(model, p.lr), p.batch_size)


def run(model: str, depth: int, scale: str, seed: int, **execute_kwargs):
    """One run through ``rfwp.train.execute``, named e.g. "listops/depth10/delta_rnn"; ``execute_kwargs``:
    results_dir, cache_dir, progress, train."""
    p = preset(scale)
    if depth not in p.steps:
        raise ValueError(f"scale {scale!r} trains ListOps at depths {sorted(p.steps)}, not {depth}")
    schedule = algorithmic.selection_schedule(p.steps[depth], p.eval_every)
    return algorithmic.run(f"listops/depth{depth}/{model}", config(model, depth, scale), schedule, seed, scale,
                           **execute_kwargs)
