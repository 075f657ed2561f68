"""Language modelling runs (RFWP Sec. 4.1 and App. A.1): a model trained on a corpus' token stream in segments,
with context truncation or with the full context, and evaluated as the paper does.

    config = LanguageModellingConfig("shakespeare", "delta_rnn", model_config, optimiser, batch_size=32,
                                     full_context=True)
    record = execute(name, config, partial(make_trainer, data_dir=None), schedule, seed=0, scale="cpu")
    record.final["test_perplexity"]     # of the trained model, by sliding window or with the full context

Training (App. A.1): the training stream is cut into ``batch_size`` columns read in segments of
``segment_length`` tokens. With context truncation every segment starts from a zero state; with the full
context each starts from the state the previous segment of its column ended in, detached (truncated
backpropagation through time), for every layer and every kind of state. During training the validation
stream is read the same way in ``eval_batch_size`` columns, a cheap loss for the learning curves. After the
last step the trained model is evaluated once on valid and test with batch 1: a sliding window of
``segment_length`` tokens (truncated models) or the state carried through the whole split (full context).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rfwp.models import ModelConfig, build_model
from rfwp.tasks.language_modelling import corpus as corpora
from rfwp.tasks.language_modelling.evaluation import full_context_perplexity, sliding_window_perplexity
from rfwp.train import ContiguousSegments, OptimiserConfig, SequenceTrainer


@dataclass(frozen=True)
class LanguageModellingConfig:
    """One run: what is hashed into the run record."""
    corpus: str                      # a name of ``corpus.CORPORA``
    model: str
    model_config: ModelConfig        # with the corpus' vocabulary size
    optimiser: OptimiserConfig
    batch_size: int                  # columns of the training stream (global, over every process)
    segment_length: int = 256        # App. A.1: training segments, and the sliding window of the evaluation
    full_context: bool = False       # carry the state across segments (Table 1's "+ full context" rows)
    eval_batch_size: int = 16        # columns of the validation stream read during training
    eval_stride: int = 1             # the sliding window's step in the final evaluation (App. A.1: 1)
    eval_tokens: int | None = None   # the final evaluation reads the first this many tokens of each split

    def __post_init__(self):
        if self.segment_length < 1 or self.eval_stride < 1:
            raise ValueError(f"segment_length and eval_stride must be ≥ 1, got {self.segment_length} and "
                             f"{self.eval_stride}")


class LanguageModellingTrainer(SequenceTrainer):
    """``SequenceTrainer`` on a corpus' token stream, with the paper's evaluation once training ends."""

    def __init__(self, config: LanguageModellingConfig, corpus: corpora.Corpus):
        self.run_config, self.corpus = config, corpus
        super().__init__(build_model(config.model, config.model_config), config.optimiser,
                         ContiguousSegments(corpus.train, config.batch_size, config.segment_length),
                         {"valid": ContiguousSegments(corpus.valid, config.eval_batch_size, config.segment_length)},
                         carry_state=config.full_context)

    def final_evaluate(self) -> dict[str, float]:
        """Valid and test perplexity of the trained model with batch 1 (App. A.1)."""
        c, out = self.run_config, {}
        for split in ("valid", "test"):
            ids = getattr(self.corpus, split)[:c.eval_tokens]
            if c.full_context:
                result = full_context_perplexity(self.model, ids, segment=c.segment_length)
            else:
                result = sliding_window_perplexity(self.model, ids, window=c.segment_length, stride=c.eval_stride)
            out.update({f"{split}_perplexity": result.perplexity, f"{split}_nll": result.nll})
        return out


def make_trainer(config: LanguageModellingConfig, seed: int, data_dir: str | Path | None = None,
                 cache_dir: Path | None = None) -> LanguageModellingTrainer:
    """The trainer of ``config`` (``seed`` is set by ``execute``: the stream itself is not shuffled);
    ``data_dir`` holds WikiText-103 when ``config.corpus`` is "wikitext103"."""
    del seed
    return LanguageModellingTrainer(config, corpora.load(config.corpus, data_dir, cache_dir))


def parameter_count(model: str, config: ModelConfig) -> int:
    """Parameters of ``model`` at ``config``, counted without allocating them."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(model, config).parameters())
