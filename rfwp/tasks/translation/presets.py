"""What the translation notebook runs at each scale (ICML 2021 Sec. 6.2, App. E, Tables 1 and 6), and the conversion
of Table 1's d_dot into each attention's own hyper-parameter (Table 6).

The paper's training (App. E) adapts fairseq's recipe for the big Transformer on WMT'16 En-De (Ott et al. 2018;
``examples/scaling_nmt/README.md`` of fairseq): Adam β = (0.9, 0.98), ε = 1e-8, no weight decay, no gradient
clipping; an inverse-square-root learning rate after a linear warm-up from 1e-7 over 4,000 updates; label smoothing
0.1; dropout 0.3 (``model.TRANSFORMER_BIG``); batches of at most 3,584 tokens (``--max-tokens``). App. E: "on three
GPUs using a batch size of up to 3584 tokens per GPU and accumulating gradients over 16 batches for 45 epochs, and
selected the best model based on the validation BLEU score", so an update is 3 × 16 = 48 batches.

The paper does not state its learning rate. The recipe gives 5e-4 for 8 GPUs without accumulation and, for the
variant that accumulates 16 batches (``--update-freq 16``), "increase the learning rate; 0.001 works well for big
batches". The paper accumulates 16 batches as that variant does (48 batches an update, the recipe's variant 128,
its plain form 8), so we take 1e-3 for the paper scale: our reading, not a number of the paper's.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from rfwp.feature_maps import check_choice
from rfwp.tasks.translation.model import ATTENTIONS, TRANSFORMER_BIG, TranslationConfig
from rfwp.train import check_scale

# ICML Table 1's runs, (attention, d_dot), as rfwp/paper/icml_T1.csv lists them: the Standard (softmax) and Linear
# Transformers at d_dot = d_key = 64 only, the Performer at 64, 256 and 512, DPFP at 256 and 512.
TABLE1_SETTINGS = (("softmax", 64), ("linear", 64), ("performer", 64), ("performer", 256), ("performer", 512),
                   ("dpfp", 256), ("dpfp", 512))
# The names Table 1 gives the attentions.
PAPER_NAMES = {"softmax": "Standard", "linear": "Linear", "performer": "Performer", "dpfp": "DPFP"}
# fairseq's --max-source-positions and --max-target-positions of the big Transformer: longer training pairs are
# skipped (the Bible has none; the sinusoidal positions themselves have no limit).
MAX_POSITIONS = 1024


@dataclass(frozen=True)
class TranslationScale:
    """What the translation notebook runs at one scale. A run trains for ``steps`` updates, or, where that is None,
    ``epochs`` passes over the training pairs (the updates they take depend on the corpus's lengths); it is
    evaluated every ``eval_every`` updates, or once an epoch where that is None."""
    corpus: str                        # a name of corpus.CORPORA
    architecture: TranslationConfig    # every model's, before its attention and the vocabulary
    vocabulary: int                    # joint subwords learnt on the training split (App. E: 32 K BPE units)
    max_tokens: int                    # a batch: sentences × the longest side, EOS included (fairseq --max-tokens)
    accumulate: int                    # batches per update (the paper's GPUs × accumulated batches)
    steps: int | None                  # updates of a run, or None: ``epochs``
    warmup_steps: int                  # linear warm-up, then lr·√(warmup_steps / step)
    lr: float                          # the learning rate at the end of the warm-up
    eval_every: int | None             # updates between evaluations (None: one an epoch)
    eval_sentences: int | None         # valid pairs read (loss, BLEU) at each evaluation (None: all)
    eval_beam: int                     # their beam (1: greedy)
    beam: int                          # the final decoding of valid and test
    final_sentences: int | None = None   # valid and test pairs read at the end (None: all)
    epochs: int | None = None
    settings: tuple[tuple[str, int], ...] = TABLE1_SETTINGS   # (attention, d_dot) of each run
    seeds: tuple[int, ...] = (0,)      # Table 1 has one run of each model
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    warmup_init_lr: float = 1e-7
    label_smoothing: float = 0.1
    examples: int = 3                  # test translations kept in each record

    def __post_init__(self):
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"a scale has either steps or epochs, got steps={self.steps}, epochs={self.epochs}")


# ICML App. E with fairseq's recipe (module docstring); every evaluation decodes all of newstest2013 with the final
# beam (fairseq's beam 4 for the recipe), so that the checkpoint selected is the one best in the BLEU reported.
PAPER = TranslationScale("wmt14_en_de", TRANSFORMER_BIG, vocabulary=32_000, max_tokens=3584, accumulate=3 * 16,
                         steps=None, epochs=45, warmup_steps=4000, lr=1e-3, eval_every=None, eval_sentences=None,
                         eval_beam=4, beam=4)
# A model with d_key = 64, as the paper's, so that Table 1's d_dot and Table 6's m and ν are the paper's too.
SMOKE = TranslationScale("bible_en_es", replace(TRANSFORMER_BIG, d_model=64, n_heads=1, d_ff=128, encoder_layers=1,
                                                decoder_layers=1),
                         vocabulary=1000, max_tokens=1024, accumulate=1, steps=6, warmup_steps=2, lr=1e-3,
                         eval_every=3, eval_sentences=8, eval_beam=1, beam=4, final_sentences=16)
# Chosen by measurement (results/benchmarks/translation.md, two threads: the notebook trains one run at a time):
# d_key 64 as the paper's, so that Table 1's d_dot and Table 6's m and ν are the paper's; 2 heads, 3 + 3 layers of
# 128 (d_ff 512), 4,000 joint subwords and batches of 2,048 tokens (556 updates an epoch of the Bible's 28,619
# training verses). Dropout 0.1 and lr 2e-3, not the big model's 0.3 and 1e-3: a model of 2 M parameters that sees
# the corpus a few times is not the one that overfits, and with 0.3 and 1e-3 the softmax Transformer had 1.2 valid
# BLEU after 750 updates (0.1 and 2e-3: 5.3 after 1,000, 15.3 after 3,000, greedy on 200 verses). The slowest
# attentions, DPFP and the Performer at d_dot 512 (0.5 s an update on two threads), set the updates: 3,000 (5.4
# epochs), about 25 minutes of their updates. Their evaluations (validation BLEU on 200 verses, greedy, every 300
# updates; the final beam-4 decoding of all valid and test verses, through a 512-wide fast weight per hypothesis)
# took them to about 40 minutes in the committed runs, and the seven runs of Table 1 to about 4 hours.
CPU = TranslationScale("bible_en_es", replace(TRANSFORMER_BIG, d_model=128, n_heads=2, d_ff=512, encoder_layers=3,
                                              decoder_layers=3, dropout=0.1),
                       vocabulary=4000, max_tokens=2048, accumulate=1, steps=3000, warmup_steps=240, lr=2e-3,
                       eval_every=300, eval_sentences=200, eval_beam=1, beam=4)


def preset(scale: str) -> TranslationScale:
    check_scale(scale)
    return {"smoke": SMOKE, "cpu": CPU, "paper": PAPER}[scale]


def attention_config(architecture: TranslationConfig, attention: str, d_dot: int | None) -> TranslationConfig:
    """``architecture`` with ``attention`` at ``d_dot`` (ICML Table 6): the Performer's m = d_dot / 2 random
    features (d_dot = 2m), DPFP's ν = d_dot / (2 d_key) (d_dot = 2 d_key ν); softmax and linear attention have
    d_dot = d_key, which None also means for them."""
    check_choice("attention", attention, ATTENTIONS)
    d_key = architecture.d_key
    if attention in ("softmax", "linear"):
        if d_dot not in (None, d_key):
            raise ValueError(f"{attention} attention has d_dot = d_key = {d_key}, got d_dot {d_dot}")
        return replace(architecture, attention=attention)
    if d_dot is None:
        raise ValueError(f"the {attention} attention needs d_dot (ICML Table 1: "
                         f"{', '.join(str(d) for a, d in TABLE1_SETTINGS if a == attention)})")
    if attention == "performer":
        if d_dot < 2 or d_dot % 2:
            raise ValueError(f"the performer's d_dot is 2m, an even number, got {d_dot}")
        return replace(architecture, attention=attention, m=d_dot // 2)
    if d_dot < 2 * d_key or d_dot % (2 * d_key):
        raise ValueError(f"DPFP's d_dot is 2·d_key·ν, a multiple of {2 * d_key} at d_key {d_key}, got {d_dot}")
    return replace(architecture, attention=attention, nu=d_dot // (2 * d_key))
