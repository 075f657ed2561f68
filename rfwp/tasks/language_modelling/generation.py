"""Text sampled from a trained language model: a prompt, then one word at a time from the model's distribution,
the state carried from word to word (for every model: its state is the whole context, within one window for the
truncated models as long as prompt and continuation stay under the training segment).

    continuation(model, corpus, "To be , or not to be", words=40, seed=0)   # "that is the question ..."
"""
from __future__ import annotations

import torch
from torch import nn

from rfwp.tasks.language_modelling.corpus import EOS, UNK, Corpus, tokenize


def continuation(model: nn.Module, corpus: Corpus, prompt: str, words: int = 40, seed: int = 0,
                 temperature: float = 1.0, top_k: int | None = 40) -> str:
    """``words`` tokens sampled after ``prompt`` (tokenised as the corpus is; a word outside its vocabulary reads
    as ``<unk>``), from the ``top_k`` most likely words at ``temperature``, with a generator of its own seeded by
    ``seed`` (the global random state is untouched). Returned as text: tokens joined by spaces, ``<eos>`` a new
    line. Dropout is off while sampling; the model's training mode is restored afterwards."""
    if words < 1 or temperature <= 0 or (top_k is not None and top_k < 1):
        raise ValueError(f"words and top_k must be ≥ 1 and temperature > 0, got {words}, {top_k}, {temperature}")
    index = {word: i for i, word in enumerate(corpus.vocabulary)}
    ids = [index.get(word, index[UNK]) for word in [EOS, *tokenize(prompt)]]
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits, state = model(torch.tensor([ids], device=device))
            sampled = []
            for _ in range(words):
                scores = logits[0, -1].log_softmax(-1) / temperature
                if top_k is not None:
                    threshold = scores.topk(min(top_k, len(scores))).values[-1]
                    scores = scores.masked_fill(scores < threshold, -torch.inf)
                word = int(torch.multinomial(scores.softmax(-1), 1, generator=generator))
                sampled.append(word)
                logits, state = model(torch.tensor([[word]], device=device), state)
    finally:
        model.train(training)
    text = " ".join(corpus.vocabulary[i] for i in ids[1:] + sampled)
    return text.replace(f" {EOS} ", "\n").replace(EOS, "\n").strip()
