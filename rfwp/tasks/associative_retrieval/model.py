"""The model of ICML Sec. 6.1: L key-value pairs are written into a memory, which one query then reads."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rfwp import ops
from rfwp.feature_maps import FeatureMap
from rfwp.ops.reference import delta_update
from rfwp.tasks.associative_retrieval.config import RetrievalConfig
from rfwp.tasks.associative_retrieval.data import Batch


# The sum rule's read W φ(q) / (z·φ(q) + ε): the authors' ε (original-code.md §8).
READ_EPS = 1e-6


class RetrievalModel(nn.Module):
    """The Sec. 6.1 model: write L key-value pairs into a memory, read it with the query."""

    def __init__(self, config: RetrievalConfig):
        super().__init__()
        self.config = config
        S, d, e = config.S, config.d_key, config.d_embedding
        self.embedding = nn.Embedding(S, e)
        self.W_K = nn.Linear(S + e, d)
        self.W_Q = nn.Linear(e, d)
        self.W_beta = nn.Linear(S + e, 1)
        # Initialisation of the authors' code (the paper gives none): e ~ N(0, 1), W_K, W_Q ~ U(±1/√d).
        nn.init.normal_(self.embedding.weight)
        nn.init.uniform_(self.W_K.weight, -d ** -0.5, d ** -0.5)
        nn.init.uniform_(self.W_Q.weight, -d ** -0.5, d ** -0.5)
        if config.feature_map not in ("none", "tanh"):
            # the sum rule uses attention normalisation (in _sum), ours sum normalisation (Eq. 29);
            # eps keeps a key whose features are all zero (possible with DPFP) from dividing by 0.
            normalisation = "sum" if config.memory == "delta" else "none"
            self.features = FeatureMap(config.feature_map, d_key=d, nu=config.nu, m=config.m,
                                       normalisation=normalisation, eps=1e-6)

    def forward(self, keys: Tensor, values: Tensor, queries: Tensor) -> Tensor:
        """keys, values (B, L), queries (B, Q) → retrieved values v̂ (B, Q, S)."""
        k = self._project(self.W_K, keys, values)
        beta = torch.sigmoid(self._project(self.W_beta, keys, values)).squeeze(-1)
        q = self.W_Q(self.embedding(queries))
        return getattr(self, f"_{self.config.memory}")(k, values, beta, q)

    def _project(self, linear: nn.Linear, keys: Tensor, values: Tensor) -> Tensor:
        """linear(x_t) for x_t = [onehot(v_t); e(k_t)], as W[:, v_t] + (W_e e)(k_t) + b: both halves are
        tables over the S symbols, so projecting the S embeddings once and gathering gives the same
        numbers without building the (B, L, S + d_emb) inputs (the cost at large S)."""
        S = self.config.S
        by_value = linear.weight[:, :S].T
        by_key = self.embedding.weight @ linear.weight[:, S:].T
        return by_value[values] + by_key[keys] + linear.bias

    def _features(self, k: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        if self.config.feature_map == "tanh":
            return torch.tanh(k), torch.tanh(q)
        return self.features(k, q)  # one call, so FAVOR+ uses the same random features for both

    def _one_hot(self, values: Tensor) -> Tensor:
        return F.one_hot(values, self.config.S).to(self.embedding.weight.dtype)

    def _add_rows(self, rows: Tensor, values: Tensor) -> Tensor:
        """Σ_t onehot(v_t) ⊗ rows_t for rows (B, ..., L, n): row t added to column v_t of a (B, ..., S, n)."""
        out = rows.new_zeros(*rows.shape[:-2], self.config.S, rows.shape[-1])
        index = values.view(*values.shape[:1], *([1] * (rows.dim() - 3)), -1, 1).expand_as(rows)
        return out.scatter_add(-2, index, rows)

    def _softmax(self, k, values, beta, q):
        attention = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.config.d_key), dim=-1)
        return self._add_rows(attention.transpose(1, 2), values).transpose(1, 2)  # V softmax(Kᵀq)

    def _sum(self, k, values, beta, q):
        phi_k, phi_q = self._features(k, q)
        # Only the memory after the last write is read: W_L = Σ_t onehot(v_t) ⊗ φ(k_t) in closed form
        # (the final state of rfwp.ops.sum_rule, tested equal) without its L intermediate reads.
        W = self._add_rows(phi_k, values)
        z = phi_k.sum(1)
        return torch.einsum("bvk,bqk->bqv", W, phi_q) / (torch.einsum("bk,bqk->bq", z, phi_q) + READ_EPS).unsqueeze(-1)

    def _delta(self, k, values, beta, q):
        phi_k, phi_q = self._features(k, q)
        v = self._one_hot(values)
        # rfwp.ops works on (batch, heads, length, dim): one head. Its per-step reads are unused. With one
        # head of S-wide values the chunkwise form is about twice as fast here as the step-by-step kernel.
        _, W = ops.delta_rule(phi_k.unsqueeze(1), phi_k.unsqueeze(1), v.unsqueeze(1), beta.unsqueeze(1),
                              implementation="chunked")
        return torch.einsum("bvk,bqk->bqv", W.squeeze(1), phi_q)

    def _fwm(self, k, values, beta, q):
        phi_k, phi_q = self._features(k, q)
        v = self._one_hot(values)
        W = k.new_zeros(k.shape[0], self.config.S, phi_k.shape[-1])
        for t in range(k.shape[1]):
            # Schlag et al. (2021): W − old ⊗ k + (β v + (1 − β) old) ⊗ k is the delta step
            W = delta_update(W, phi_k[:, t], v[:, t], beta[:, t])
            # ... then the memory is kept inside the unit Frobenius ball, after every write (the
            # authors' port skips it after the first one).
            W = W / W.flatten(1).norm(dim=-1).clamp(min=1).view(-1, 1, 1)
        # The read is layer-normalised without affine parameters: unless its variance is below
        # LayerNorm's ε = 1e-5 (then v̂ ≈ read / √ε), v̂ has zero mean and unit variance, unlike any
        # one-hot vector, and the loss is at least ½(1 + S − 2√(S−1)).
        return F.layer_norm(torch.einsum("bvk,bqk->bqv", W, phi_q), (self.config.S,))


def retrieval_loss(v_hat: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
    """Mean over the scored queries of 0.5 ‖onehot(v*) − v̂‖², and the fraction retrieved exactly
    (argmax v̂ = v*)."""
    target = F.one_hot(batch.targets, v_hat.shape[-1]).to(v_hat.dtype)
    per_query = 0.5 * ((target - v_hat) ** 2).sum(-1)
    mask = batch.mask.to(v_hat.dtype)
    loss = (per_query * mask).sum() / mask.sum()
    accuracy = ((v_hat.argmax(-1) == batch.targets).to(v_hat.dtype) * mask).sum() / mask.sum()
    return loss, accuracy
