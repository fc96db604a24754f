"""Last-layer [CLS] pruning for heads that read only position 0 (text-classification, multiple-choice).

DistilBERT's classification heads read `last_hidden_state[:, 0]`, so in the last encoder layer only the [CLS] row is
ever used. Q, the attention output projection, both LayerNorms and the FFN run on that one row instead of all L.
Attention is reassociated so that no K or V is projected for the L tokens either: per head h,
q.K_h^T = (q.Wk_h).X^T + q.bk_h, whose bias term is the same for every key and cancels in softmax, and
p.V_h = (p.X).Wv_h^T + bv_h, since p sums to 1. The per-head products run as H-row GEMMs against the whole Wk and Wv
(row h of q masked to head h's columns; head h's columns kept from row h of the result): H times the FLOPs of the exact
per-head form, but plain GEMMs with 2-D weights, which OpenVINO runs as FullyConnected (1.1–1.5% faster end to end than
batched per-head MatMuls, measured at 1x128). The answers are unchanged (the export validates the pruned graph
against the unpruned PyTorch model). At 128 tokens this removes 1.82 of 11.17 GFLOP of a DistilBERT-base pass."""
from __future__ import annotations

import copy

from runtimes.errors import ConfigError

CLS_TASKS = ("text-classification", "multiple-choice")


def saved_flops(config, seq: int) -> float:
    """FLOPs the pruning removes from one sequence of `seq` tokens (2 FLOPs per multiply-add)."""
    d, h, heads = config.dim, config.hidden_dim, config.n_heads
    full = seq * (4 * d * d + 2 * d * h) + 2 * seq * seq * d  # q, k, v, out_lin, FFN; q.K^T and p.V
    pruned = 2 * d * d + 2 * heads * d * d + 2 * d * h + 2 * heads * seq * d  # q, out_lin; q.Wk, p.X.Wv (H rows)
    return 2 * (full - pruned)


def check_task(task: str) -> None:
    if task not in CLS_TASKS:
        raise ConfigError(f"--cls-pruning fits heads that read only [CLS] ({', '.join(CLS_TASKS)}); "
                          f"{task} reads every token. Fix: drop --cls-pruning")


def pruned_copy(model, task: str):
    """A copy of `model` whose last encoder layer computes the [CLS] row only (weights shared in value, not identity)."""
    check_task(task)
    import torch

    class ClsOnlyLayer(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer
            size = layer.attention.attention_head_size
            heads = torch.eye(layer.attention.dim // size).repeat_interleave(size, dim=1)  # H x dim, head h's columns
            self.register_buffer("heads", heads, persistent=False)

        def forward(self, hidden_states, attention_mask=None, **kwargs):
            att, cls = self.layer.attention, hidden_states[:, :1]
            q = att.q_lin(cls) * att.scaling * self.heads  # B,H,dim: row h is q_h in head h's columns, zeros elsewhere
            scores = torch.matmul(torch.matmul(q, att.k_lin.weight), hidden_states.transpose(1, 2))  # B,H,L
            if attention_mask is not None and attention_mask.dim() == 4:
                scores = scores + attention_mask[:, 0, :1]  # the [CLS] query row of the additive mask
            mixed = torch.matmul(torch.softmax(scores, dim=-1), hidden_states)  # B,H,dim: p_h.X
            ctx = (torch.nn.functional.linear(mixed, att.v_lin.weight) * self.heads).sum(1, keepdim=True)
            out = self.layer.sa_layer_norm(att.out_lin(ctx + att.v_lin.bias) + cls)
            return self.layer.output_layer_norm(self.layer.ffn(out) + out)

    pruned = copy.deepcopy(model)
    layers = pruned.distilbert.transformer.layer
    if pruned.config._attn_implementation != "eager":
        raise ConfigError(f"[CLS] pruning reimplements eager attention; the model uses "
                          f"'{pruned.config._attn_implementation}'. Load it with attn_implementation='eager'")
    layers[-1] = ClsOnlyLayer(layers[-1])
    return pruned
