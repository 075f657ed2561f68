"""Why a memory fails at this scale, where the paper's text gives no reason: measurements without training."""
from __future__ import annotations

import pandas as pd
import torch

from rfwp.tasks.associative_retrieval.config import config_for
from rfwp.tasks.associative_retrieval.data import evaluation_batch
from rfwp.tasks.associative_retrieval.model import READ_EPS, RetrievalModel


def _initial_keys_and_queries(variant: str, S: int, seed: int):
    """The model of ``variant`` at initialisation in setting 1 (eval mode), its keys k (B, L, d_key) and
    queries q (B, S, d_key) on 20 evaluation sequences, every key queried."""
    torch.manual_seed(seed)
    model = RetrievalModel(config_for(variant, S, "capacity")).eval()
    batch = evaluation_batch("capacity", S, 20, torch.Generator().manual_seed(seed))
    return model, model._project(model.W_K, batch.keys, batch.values), model.W_Q(model.embedding(batch.queries))


@torch.no_grad()
def favor_read_denominators(sizes, variant: str = "sum_favor64", seed: int = 0) -> pd.DataFrame:
    """FAVOR+ at initialisation, setting 1: the read is W φ(q) / (z·φ(q) + ε) with ε = READ_EPS (the authors'
    1e-6), and φ(x) ∝ exp(±w·x − ‖x‖²/2). The key embedding has 2.2 S dimensions of N(0, 1), so ‖k‖² grows
    with S and z·φ(q) shrinks like exp(−‖k‖²/2 − ‖q‖²/2): once it is far below ε the read is 0 whatever the
    memory holds, and so is every gradient. Per S: the median ‖k‖²/2, the median z·φ(q) over all queries,
    and the fraction of queries whose z·φ(q) is below ε."""
    rows = []
    for S in sizes:
        model, k, q = _initial_keys_and_queries(variant, S, seed)
        phi_k, phi_q = model._features(k, q)
        denominator = torch.einsum("bk,bqk->bq", phi_k.sum(1), phi_q)
        rows.append({"S": S, "median_half_key_norm": float((0.5 * (k * k).sum(-1)).median()),
                     "median_denominator": float(denominator.median()),
                     "fraction_below_eps": float((denominator < READ_EPS).float().mean())})
    return pd.DataFrame(rows)


@torch.no_grad()
def softmax_attention_at_initialisation(sizes, seed: int = 0) -> pd.DataFrame:
    """Softmax attention at initialisation, setting 1: the logits q·k/√d_key spread with the 2.2 S-dimensional
    key embedding, so for large S each query puts nearly all its weight on one key, a random one: the read is a
    one-hot vector, mostly wrong (loss near 1), and the softmax passes almost no gradient. Per S: the standard
    deviation of the logits and the median over queries of the largest attention weight."""
    rows = []
    for S in sizes:
        model, k, q = _initial_keys_and_queries("softmax", S, seed)
        logits = q @ k.transpose(1, 2) / model.config.d_key ** 0.5
        rows.append({"S": S, "logit_std": float(logits.std()),
                     "median_largest_weight": float(torch.softmax(logits, -1).amax(-1).median())})
    return pd.DataFrame(rows)
