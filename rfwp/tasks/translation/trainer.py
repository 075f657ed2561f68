"""Translation runs (ICML 2021 Sec. 6.2 and App. E): the encoder-decoder Transformer with softmax, Linear, Performer
or DPFP attention, trained on sentence pairs as fairseq trains the big Transformer and selected on validation BLEU.

    record = run("dpfp", 256, "cpu", seed=0)
    record.final["test_bleu"]     # of the checkpoint with the best valid_bleu: beam search, sacreBLEU

Data: both sides are encoded with the corpus's joint subwords (``subwords``); the encoder reads x_1 … x_m EOS, the
decoder reads BOS y_1 … y_n and is trained to predict y_1 … y_n EOS. The training pairs are grouped by length into
batches of at most ``max_tokens`` tokens, counted as sentences × the longest side of any pair in the batch (fairseq's
``--max-tokens``; ``token_budget_batches``), formed once; every epoch visits them in a new order drawn from the
run's seed (``TokenBudgetStream``). Pairs with a side longer than ``MAX_POSITIONS`` or ``max_tokens`` are skipped.

Training: an update takes ``accumulate`` batches (the paper's 3 GPUs × 16 accumulated batches, here in one process)
and descends the label-smoothed cross-entropy (ε = 0.1) summed over their target tokens and divided by their number,
as fairseq normalises by its ``ntokens``; Adam with fairseq's inverse-square-root schedule (``inverse_sqrt``), no
clipping, no weight decay.

Evaluation, every ``eval_every`` updates, reads ``eval_sentences`` valid pairs evenly spaced through the split
(``evenly_spaced``; None: all of them): their label-smoothed loss and nll per target token, and ``valid_bleu``, the
sacreBLEU of their translations decoded with beam ``eval_beam`` (1: greedy). The Schedule monitors valid_bleu (mode
"max"), App. E's selection of "the best model based on the validation BLEU score"; the trainer keeps a copy of the
weights of the best evaluation so far (a strictly higher valid_bleu, as the Schedule decides its ``best``), in its
``state_dict``, so a resumed run keeps it too. ``final_evaluate`` reads valid and test (all pairs, or
``final_sentences`` evenly spaced: loss, nll, BLEU) with those weights and beam ``beam``: every metric in
``record.final`` is the selected checkpoint's (its step is ``selected_step``, which is ``record.best["step"]``),
not the last weights'; the history has the evaluations of the weights as training left them.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from itertools import chain
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from rfwp.tasks.translation import corpus as corpora
from rfwp.tasks.translation import subwords
from rfwp.tasks.translation.bleu import Bleu, bleu
from rfwp.tasks.translation.decoding import beam_search
from rfwp.tasks.translation.model import Transformer, TranslationConfig, label_smoothed_cross_entropy
from rfwp.tasks.translation.presets import MAX_POSITIONS, attention_config, preset
from rfwp.tasks.translation.subwords import BOS, EOS, PAD
from rfwp.train import Schedule, distributed, execute
from rfwp.train.supervised import EpochOrder

ENCODE_CHUNK = 100_000   # sentences encoded at a time (WMT14's 4.5 M pairs never as one list of lists)


# ----------------------------------------------------------------------------------------------
# Data

@dataclass(frozen=True, eq=False)
class Sentences:
    """Token ids of sentences stored flat: sentence i is ``ids[offsets[i]:offsets[i + 1]]``, without EOS."""
    ids: np.ndarray       # int32
    offsets: np.ndarray   # (n + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass(frozen=True, eq=False)
class Pairs:
    """A split as ids: ``target[i]`` translates ``source[i]``."""
    source: Sentences
    target: Sentences

    def __len__(self) -> int:
        return len(self.source)


@dataclass(frozen=True, eq=False)
class TranslationData:
    """A corpus (its text: the references of BLEU), its subword vocabulary, and each split as ids."""
    corpus: corpora.Corpus
    vocabulary: subwords.Subwords
    splits: dict[str, Pairs]


def encode(vocabulary: subwords.Subwords, texts: Sequence[str]) -> Sentences:
    """The subword ids of ``texts``, ``ENCODE_CHUNK`` sentences at a time."""
    lengths, parts = [], []
    for start in range(0, len(texts), ENCODE_CHUNK):
        rows = vocabulary.encode(texts[start:start + ENCODE_CHUNK])
        lengths.extend(map(len, rows))
        parts.append(np.fromiter(chain.from_iterable(rows), dtype=np.int32))
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    return Sentences(ids, np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]))


def prepare(corpus: corpora.Corpus, vocabulary: subwords.Subwords) -> TranslationData:
    """``corpus`` with every split encoded by ``vocabulary``."""
    splits = {split: Pairs(encode(vocabulary, getattr(corpus, split).source),
                           encode(vocabulary, getattr(corpus, split).target)) for split in corpora.SPLITS}
    return TranslationData(corpus, vocabulary, splits)


@lru_cache(maxsize=2)
def load_data(name: str, vocabulary_size: int, data_dir: str | Path | None = None,
              cache_dir: str | Path | None = None) -> TranslationData:
    """Corpus ``name`` encoded with its joint vocabulary of ``vocabulary_size`` subwords (both cached on disk in
    ``cache_dir``; the encoded splits once per process)."""
    text = corpora.load(name, data_dir, cache_dir)
    return prepare(text, subwords.learn(text, vocabulary_size, cache_dir))


def token_budget_batches(source_lengths: np.ndarray, target_lengths: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """fairseq's batching by size (``--max-tokens``): the indices sorted by target length, then source length (then
    index), cut greedily into batches whose padded size, sentences × the longest side of any of their pairs, is at
    most ``max_tokens``. Lengths count EOS. A pair over the budget on its own makes a batch alone."""
    size = np.maximum(source_lengths, target_lengths)
    order = np.lexsort((source_lengths, target_lengths))   # the last key sorts first; stable: ties by index
    batches, start, longest = [], 0, 0
    for position, i in enumerate(order):
        longest = max(longest, size[i])
        if position > start and (position - start + 1) * longest > max_tokens:
            batches.append(order[start:position])
            start, longest = position, size[i]
    if len(order):
        batches.append(order[start:])
    return batches


class PairBatch(NamedTuple):
    source: Tensor          # (B, S) x_1 … x_m EOS, right-padded with PAD
    target_input: Tensor    # (B, T) BOS y_1 … y_n
    target: Tensor          # (B, T) y_1 … y_n EOS
    index: Tensor           # (B,) the pairs' positions in their split

    def to(self, device: torch.device) -> PairBatch:
        return PairBatch(*(t.to(device) for t in self))


def padded(rows: Sequence[np.ndarray], start: int | None = None, end: int | None = None) -> Tensor:
    """(len(rows), longest) token ids: each row after ``start`` and before ``end`` where given, PAD after it."""
    rows = [[*(() if start is None else (start,)), *row.tolist(), *(() if end is None else (end,))] for row in rows]
    out = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
    for b, row in enumerate(rows):
        out[b, :len(row)] = torch.tensor(row)
    return out


def collate(pairs: Pairs, index: Sequence[int]) -> PairBatch:
    """The pairs ``index`` of ``pairs`` as one batch (``PairBatch``)."""
    sources, targets = [pairs.source[i] for i in index], [pairs.target[i] for i in index]
    return PairBatch(padded(sources, end=EOS), padded(targets, start=BOS), padded(targets, end=EOS),
                     torch.as_tensor(np.asarray(index, dtype=np.int64)))


class TokenBudgetStream:
    """The training pairs in token-budget batches, epoch after epoch: the batches are formed once
    (``token_budget_batches``, without the pairs that have a side over ``min(max_length, max_tokens)`` tokens,
    counted in ``skipped``); every epoch takes all of them in a new random order from a generator of the stream's
    own, seeded with the run's seed. ``state_dict`` holds where it is, so a resumed stream goes on identically."""

    def __init__(self, pairs: Pairs, max_tokens: int, seed: int, max_length: int = MAX_POSITIONS):
        source, target = pairs.source.lengths + 1, pairs.target.lengths + 1   # EOS counted
        limit = min(max_length, max_tokens)
        kept = np.flatnonzero((source <= limit) & (target <= limit))
        if not len(kept):
            raise ValueError(f"no training pair fits a batch of max_tokens={max_tokens} (and at most {max_length} "
                             f"tokens a side)")
        self.pairs, self.skipped = pairs, len(pairs) - len(kept)
        self.batches = [kept[b] for b in token_budget_batches(source[kept], target[kept], max_tokens)]
        self.order = EpochOrder(len(self.batches), seed)

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.batches)

    @property
    def epoch(self) -> int:
        return self.order.epoch

    def next(self) -> PairBatch:
        return collate(self.pairs, self.batches[int(self.order.take(1))])

    def state_dict(self) -> dict:
        return self.order.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.order.load_state_dict(state)


def evenly_spaced(n: int, k: int | None) -> np.ndarray:
    """k of the indices 0 … n−1 spread evenly through them (⌊i·n/k⌋), or all n where k is None or ≥ n."""
    if k is None or k >= n:
        return np.arange(n)
    return np.arange(k) * n // k


# ----------------------------------------------------------------------------------------------
# Training and evaluation

def inverse_sqrt(step: int, lr: float, warmup_steps: int, warmup_init_lr: float = 1e-7) -> float:
    """fairseq's ``inverse_sqrt`` learning rate of update ``step`` (0-based: the updates before it): linear from
    ``warmup_init_lr`` to ``lr`` over ``warmup_steps`` updates, then lr·√(warmup_steps / step), Vaswani et al.
    (2017) Eq. 3 with its peak d_model^(−1/2)·warmup^(−1/2) replaced by lr."""
    if step < warmup_steps:
        return warmup_init_lr + step * (lr - warmup_init_lr) / warmup_steps
    return lr * math.sqrt(warmup_steps / step)


@torch.no_grad()
def split_loss(model: Transformer, pairs: Pairs, index: np.ndarray, max_tokens: int,
               epsilon: float) -> tuple[float, float]:
    """The label-smoothed loss and the nll per target token (EOS included) of the pairs ``index`` of ``pairs``, in
    token-budget batches (the model in the mode it is in: eval for dropout off)."""
    device = next(model.parameters()).device
    smoothed = nll = tokens = 0.0
    for batch in token_budget_batches(pairs.source.lengths[index] + 1, pairs.target.lengths[index] + 1, max_tokens):
        batch = collate(pairs, index[batch]).to(device)
        logits = model(batch.source, batch.target_input)
        smoothed += label_smoothed_cross_entropy(logits, batch.target, epsilon, reduction="sum").item()
        nll += label_smoothed_cross_entropy(logits, batch.target, 0.0, reduction="sum").item()
        tokens += int((batch.target != PAD).sum())
    return smoothed / tokens, nll / tokens


@torch.no_grad()
def translate(model: Transformer, sources: Sentences, index: Sequence[int], vocabulary: subwords.Subwords,
              beam: int, max_tokens: int) -> list[str]:
    """The text of the best hypothesis of beam search (``decoding``; beam 1: greedy) for each source sentence
    ``sources[i]``, i in ``index``, decoded in batches of similar length of at most ``max_tokens`` source tokens."""
    device = next(model.parameters()).device
    lengths = sources.lengths[np.asarray(index, dtype=np.int64)] + 1
    tokens: list[list[int]] = [[] for _ in index]
    for batch in token_budget_batches(lengths, lengths, max_tokens):
        source = padded([sources[index[i]] for i in batch], end=EOS).to(device)
        for i, hypotheses in zip(batch, beam_search(model, source, beam)):
            tokens[i] = hypotheses[0].tokens   # y_1 … y_n EOS: EOS decodes to nothing
    return vocabulary.decode(tokens)


@dataclass(frozen=True)
class TranslationRunConfig:
    """One run: what is hashed into the run record (the fields of ``presets.TranslationScale`` they come from)."""
    corpus: str                         # a name of corpus.CORPORA
    vocabulary: int                     # joint subwords learnt on the training split
    model: TranslationConfig            # with vocabulary = ``vocabulary``, the attention and its m or ν
    max_tokens: int                     # a batch: sentences × longest side, EOS included
    accumulate: int = 1                 # batches per update
    lr: float = 1e-3
    warmup_steps: int = 4000
    warmup_init_lr: float = 1e-7
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    label_smoothing: float = 0.1
    eval_sentences: int | None = None   # valid pairs read (loss and BLEU) at each evaluation (None: all)
    eval_beam: int = 1
    beam: int = 4                       # the final decoding of valid and test
    final_sentences: int | None = None  # valid and test pairs read at the end (None: all)
    examples: int = 3                   # test translations in the record

    def __post_init__(self):
        if self.model.vocabulary != self.vocabulary:
            raise ValueError(f"the model's vocabulary ({self.model.vocabulary}) must be the run's ({self.vocabulary})")
        counts = {"max_tokens": self.max_tokens, "accumulate": self.accumulate, "warmup_steps": self.warmup_steps,
                  "eval_beam": self.eval_beam, "beam": self.beam, "eval_sentences": self.eval_sentences,
                  "final_sentences": self.final_sentences}
        bad = {name: value for name, value in counts.items() if value is not None and value < 1}
        if bad:
            raise ValueError(f"{', '.join(bad)} must be positive integers, got {bad}")


class TranslationTrainer:
    """The ``rfwp.train.Trainer`` of a translation run: see the module's docstring. One process: the paper's GPUs
    become accumulated batches (the model goes to ``distributed.setup()``'s device, a GPU where there is one)."""

    def __init__(self, config: TranslationRunConfig, data: TranslationData, seed: int):
        if distributed.world_size() > 1:
            raise ValueError("translation runs train in one process (set accumulate for the paper's GPUs), "
                             "not under torchrun")
        if len(data.vocabulary) != config.vocabulary:
            raise ValueError(f"the data's vocabulary has {len(data.vocabulary)} subwords, the run's "
                             f"{config.vocabulary}")
        self.config, self.data = config, data
        self.model = Transformer(config.model).to(distributed.setup())
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=config.betas, eps=config.eps)
        self.stream = TokenBudgetStream(data.splits["train"], config.max_tokens, seed)
        self.steps = 0
        self.best: dict | None = None   # the best evaluation: its step, valid_bleu and weights (on the CPU)

    def train_step(self, step: int) -> dict[str, float]:
        c = self.config
        self.model.train()
        lr = inverse_sqrt(step, c.lr, c.warmup_steps, c.warmup_init_lr)
        for group in self.optimiser.param_groups:
            group["lr"] = lr
        device = next(self.model.parameters()).device
        batches = [self.stream.next().to(device) for _ in range(c.accumulate)]
        tokens = sum(int((batch.target != PAD).sum()) for batch in batches)
        self.optimiser.zero_grad(set_to_none=True)
        total = 0.0
        for batch in batches:
            logits = self.model(batch.source, batch.target_input)
            loss = label_smoothed_cross_entropy(logits, batch.target, c.label_smoothing, reduction="sum")
            (loss / tokens).backward()   # the update's loss: Σ over its target tokens / their number
            total += loss.item()
        self.optimiser.step()
        self.steps = step + 1
        return {"loss": total / tokens, "lr": lr, "tokens": tokens}

    def bleu(self, model: Transformer, split: str, index: np.ndarray, beam: int) -> tuple[Bleu, list[str]]:
        """BLEU of ``model``'s translations of the pairs ``index`` of ``split`` against their text, and the
        translations."""
        hypotheses = translate(model, self.data.splits[split].source, index, self.data.vocabulary, beam,
                               self.config.max_tokens)
        references = [getattr(self.data.corpus, split).target[i] for i in index]
        return bleu(hypotheses, references), hypotheses

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        c = self.config
        self.model.eval()   # dropout off; FAVOR+ keeps its last draw
        valid = self.data.splits["valid"]
        index = evenly_spaced(len(valid), c.eval_sentences)
        loss, nll = split_loss(self.model, valid, index, c.max_tokens, c.label_smoothing)
        score = self.bleu(self.model, "valid", index, c.eval_beam)[0].score
        if self.best is None or score > self.best["valid_bleu"]:
            weights = {name: tensor.detach().to("cpu", copy=True) for name, tensor in self.model.state_dict().items()}
            self.best = {"step": self.steps, "valid_bleu": score, "model": weights}
        self.model.train()
        return {"valid_loss": loss, "valid_nll": nll, "valid_bleu": score}

    @torch.no_grad()
    def final_evaluate(self) -> dict[str, float | str]:
        """Valid and test loss, nll and BLEU (beam ``beam``) of the weights of the best evaluation, its step, the
        sacreBLEU signature, and the first ``examples`` test translations (source, reference, hypothesis)."""
        c = self.config
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.best["model"])
        model.eval()
        out: dict[str, float | str] = {"selected_step": self.best["step"]}
        translations = {}
        for split in ("valid", "test"):
            pairs = self.data.splits[split]
            index = evenly_spaced(len(pairs), c.final_sentences)
            out[f"{split}_loss"], out[f"{split}_nll"] = split_loss(model, pairs, index, c.max_tokens,
                                                                   c.label_smoothing)
            score, translations[split] = self.bleu(model, split, index, c.beam)
            out[f"{split}_bleu"], out["bleu_signature"] = score
        test, index = self.data.corpus.test, evenly_spaced(len(self.data.corpus.test), c.final_sentences)
        for i, hypothesis in enumerate(translations["test"][:c.examples]):
            out.update({f"example{i}_source": test.source[index[i]], f"example{i}_reference": test.target[index[i]],
                        f"example{i}_hypothesis": hypothesis})
        return out

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                "stream": self.stream.state_dict(), "steps": self.steps, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.stream.load_state_dict(state["stream"])
        self.steps, self.best = state["steps"], state["best"]


# ----------------------------------------------------------------------------------------------
# Runs

def make_trainer(config: TranslationRunConfig, seed: int, data_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None) -> TranslationTrainer:
    """The trainer of ``config``; ``seed`` orders the batches (``execute`` has seeded the weights' draw)."""
    return TranslationTrainer(config, load_data(config.corpus, config.vocabulary, data_dir, cache_dir), seed)


def run_name(corpus: str, attention: str, d_dot: int) -> str:
    """e.g. "translation/bible_en_es/dpfp_ddot256"."""
    return f"translation/{corpus}/{attention}_ddot{d_dot}"


def config(attention: str, d_dot: int | None, scale: str) -> TranslationRunConfig:
    """The run of ``attention`` at ``d_dot`` (None: d_key, for softmax and linear attention) at ``scale``."""
    p = preset(scale)
    model = attention_config(replace(p.architecture, vocabulary=p.vocabulary), attention, d_dot)
    return TranslationRunConfig(p.corpus, p.vocabulary, model, p.max_tokens, p.accumulate, p.lr, p.warmup_steps,
                                p.warmup_init_lr, p.betas, p.eps, p.label_smoothing, p.eval_sentences, p.eval_beam,
                                p.beam, p.final_sentences, p.examples)


def schedule(scale: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None) -> Schedule:
    """The scale's steps and evaluations, selecting on valid_bleu. A scale given in epochs (the paper's 45) counts
    the updates of an epoch of its corpus: ⌈batches / accumulate⌉, so it reads and encodes the corpus."""
    p = preset(scale)
    steps, every = p.steps, p.eval_every
    if steps is None or every is None:
        data = load_data(p.corpus, p.vocabulary, data_dir, cache_dir)
        per_epoch = math.ceil(len(TokenBudgetStream(data.splits["train"], p.max_tokens, 0)) / p.accumulate)
        steps, every = steps or p.epochs * per_epoch, every or per_epoch
    return Schedule(steps=steps, eval_every=every, monitor="valid_bleu", mode="max")


def run(attention: str, d_dot: int | None = None, scale: str = "smoke", seed: int = 0,
        data_dir: str | Path | None = None, corpus_cache: str | Path | None = None, **execute_kwargs):
    """One run through ``rfwp.train.execute``; ``data_dir``: WMT14's folder (paper scale); ``execute_kwargs``:
    results_dir, cache_dir, progress, train."""
    p = preset(scale)
    run_config = config(attention, d_dot, scale)
    make = partial(make_trainer, data_dir=data_dir, cache_dir=corpus_cache)
    return execute(run_name(p.corpus, attention, run_config.model.d_dot), run_config, make,
                   schedule(scale, data_dir, corpus_cache), seed=seed, scale=scale, **execute_kwargs)
