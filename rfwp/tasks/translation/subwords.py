"""The subword vocabulary of a translation corpus (ICML 2021 App. E: "32 K byte-pair encoding sub-word units",
Sennrich et al. 2016): one byte-pair encoding for both languages, the shared source-target vocabulary of Vaswani et
al. (2017), learnt with SentencePiece (Kudo and Richardson 2018) on the training split only.

SentencePiece works on raw text, so a sentence is encoded without the Moses tokenisation that fairseq's recipe
applies first, and decoded straight back to plain text for BLEU: ``decode(encode(text)) == normalize(text)``,
where ``normalize`` is SentencePiece's NFKC normalisation with runs of whitespace made one space and none at
either end. Byte fallback spells a character unseen in training (or too rare to get a piece of its own, below
99.95 % character coverage) as its UTF-8 bytes, so nothing decodes as unknown. Ids 0 to 3 are the padding,
unknown, begin and end of sentence (``PAD``, ``UNK``, ``BOS``, ``EOS``); ``encode`` adds none of them.

Learning is deterministic (BPE merges counts, which no thread order changes) and cached: the model is saved under
``.cache/rfwp/corpora`` (``cache_dir``) in a file whose name digests this module's source, the vocabulary size and
the training sentences. WMT14's training split (4.5 M pairs) is thinned to every k-th pair so that at most
``MAX_TRAINING_PAIRS`` are learnt from, which bounds time and memory.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import sentencepiece

from rfwp.io import atomic_write
from rfwp.train.runs import REPO_ROOT

if TYPE_CHECKING:
    from rfwp.tasks.translation.corpus import Corpus

PAD, UNK, BOS, EOS = 0, 1, 2, 3
# The paper's 32 K for WMT14 (App. E); the Bible's 0.7 M training words a language call for fewer.
VOCABULARY_SIZES = {"wmt14_en_de": 32_000, "bible_en_es": 8_000}
MAX_TRAINING_PAIRS = 1_000_000
CHARACTER_COVERAGE = 0.9995


class Subwords:
    """A SentencePiece model (its serialised bytes) with its encode, decode and normalisation."""

    def __init__(self, model: bytes):
        self.model = model
        self.processor = sentencepiece.SentencePieceProcessor(model_proto=model)
        # The model's normalisation, giving plain text rather than the processor's "▁"-marked pieces' input.
        self.normalizer = sentencepiece.SentencePieceNormalizer(model_proto=model, add_dummy_prefix=False,
                                                                escape_whitespaces=False)

    def __len__(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """The subword ids of each text, without BOS or EOS."""
        return self.processor.encode(list(texts))

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """The plain text of each id sequence; PAD, BOS and EOS decode to nothing."""
        return self.processor.decode([list(row) for row in ids])

    def normalize(self, text: str) -> str:
        """The text as SentencePiece normalises it, which is what decoding its ids gives back."""
        return self.normalizer.normalize(text)


def learn(corpus: Corpus, size: int, cache_dir: str | Path | None = None) -> Subwords:
    """The joint vocabulary of ``size`` subwords of both sides of ``corpus``'s training split, learnt once and
    then read from ``cache_dir``."""
    train = corpus.train
    step = -(-len(train) // MAX_TRAINING_PAIRS)   # every step-th pair: at most MAX_TRAINING_PAIRS
    sentences = [*train.source[::step], *train.target[::step]]
    digest = hashlib.sha256(Path(__file__).read_bytes() + str(size).encode())
    for sentence in sentences:
        digest.update(sentence.encode() + b"\n")
    path = (Path(cache_dir or REPO_ROOT / ".cache" / "rfwp" / "corpora")
            / f"{corpus.name}-subwords{size}-{digest.hexdigest()[:16]}.model")
    if not path.is_file():
        model = train_model(sentences, size)
        atomic_write(path, lambda tmp: tmp.write_bytes(model))
    return Subwords(path.read_bytes())


def train_model(sentences: Sequence[str], size: int) -> bytes:
    """A SentencePiece BPE model of ``size`` pieces learnt on ``sentences`` (module docstring); a ValueError
    if the text is too small to give that many."""
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model, model_type="bpe", vocab_size=size,
            character_coverage=CHARACTER_COVERAGE, byte_fallback=True, normalization_rule_name="nmt_nfkc",
            pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, minloglevel=2)
    except RuntimeError as error:   # SentencePiece's own message, e.g. "Vocabulary size is too high (500). ..."
        raise ValueError(f"cannot learn {size} subwords: {' '.join(str(error).split())}") from None
    return model.getvalue()
