"""Synthetic associative retrieval, ICML 2021 Sec. 6.1 (Schlag, Irie, Schmidhuber).

A sequence of L key-value pairs (k, v)_1..L over S keys and S values is written into a memory;
then a query q, one of the keys in the sequence, must retrieve the value last paired with it.
The query comes after the sequence, so the model cannot know what to keep.

  setting "capacity" (Sec. 6.1.1, Fig. 2): L = S, keys and values drawn without replacement (each
      sequence pairs a permutation of the keys with a permutation of the values).
  setting "update" (Sec. 6.1.2, Figs. 3 and 5): L = 2S, drawn with replacement, so keys recur with
      new values and the target is the value at the query's last occurrence.

Model (Sec. 6.1): x_t = [onehot(v_t); e(k_t)] with a learned key embedding e; key k_t = W_K x_t
(d_key = 64), value = onehot(v_t) (a fixed orthonormal basis), β_t = σ(W_β x_t), query
q = W_Q e(q). After the L writes the memory is read once with q; the loss is
0.5 ‖onehot(v*) − v̂‖², summed over the S components and averaged over the batch. Memories:

  softmax  attention over the stored keys, V softmax(Kᵀq / √d_key): the baseline of unbounded size
  sum      sum rule with attention normalisation (ICML Eqs. 17-19, 26-28):
           W = Σ_t v_t ⊗ φ(k_t), z = Σ_t φ(k_t), v̂ = W φ(q) / (z·φ(q) + 1e-6)
  delta    the paper's update rule (ours; Eqs. 20-25 with sum normalisation Eq. 29):
           W ← W + β_t (v_t − W φ'(k_t)) ⊗ φ'(k_t), v̂ = W φ'(q)
  fwm      Schlag et al. (2021)'s fast weight memory ported to this task (original-code.md §8): the
           same delta step on unnormalised keys, then W ← W / max(1, ‖W‖_F), v̂ = LayerNorm(W φ(q))
           without affine parameters; φ = tanh ("Schlag (2021)") or DPFP-1 ("with DPFP").

φ (``rfwp.feature_maps``): "elu" (Linear Attention, d_dot = 64), "dpfp" ν (d_dot = 128 ν), "favor" m
(d_dot = 2m, random features redrawn at every training step and fixed in evaluation, Sec. 5.3).

Where the authors' code (original-code.md §8) differs from the paper we follow the paper:
evaluation of setting 2 uses sequences of the training length 2S (their code evaluated on
length S), and every model is trained with Adam lr 1e-3 and batch 32 as the paper states
(their runs of Schlag (2021) with tanh used lr 1e-4 and batch 128).

Modules: ``config`` (a run's configuration, the paper's variants), ``data`` (sequences and queries),
``model`` (the Sec. 6.1 model and loss), ``trainer`` (one run through ``rfwp.train.execute``),
``presets`` (what each scale runs), ``sweeps`` (the figures' runs as tidy DataFrames), ``claims`` (C1, C2
and their decision rules), ``diagnostics`` (why a memory fails, measured without training), ``plots`` (the
figures and tables).
"""
from rfwp.tasks.associative_retrieval import claims, diagnostics, plots, presets, sweeps
from rfwp.tasks.associative_retrieval.config import VARIANTS, RetrievalConfig, config_for
from rfwp.tasks.associative_retrieval.data import evaluation_batch, training_batch
from rfwp.tasks.associative_retrieval.model import RetrievalModel, retrieval_loss
from rfwp.tasks.associative_retrieval.presets import SCALES, preset
from rfwp.tasks.associative_retrieval.sweeps import capacity_sweep, training_curves, update_rule_sweep
from rfwp.tasks.associative_retrieval.trainer import RetrievalTrainer, run, schedule

__all__ = ["claims", "diagnostics", "plots", "presets", "sweeps", "VARIANTS", "RetrievalConfig", "config_for",
           "evaluation_batch", "training_batch", "RetrievalModel", "retrieval_loss", "SCALES", "preset",
           "capacity_sweep", "training_curves", "update_rule_sweep", "RetrievalTrainer", "run", "schedule"]
