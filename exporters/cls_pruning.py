"""Last-layer [CLS] pruning for heads that read only position 0 (text-classification, multiple-choice).

DistilBERT's classification heads read `last_hidden_state[:, 0]`, so in the last encoder layer only the [CLS] row is
ever used. Its K and V projections still see every token (attention reads them all); Q, the attention output
projection, both LayerNorms and the FFN run on that one row instead of all L. The arithmetic on the kept row is the
same, so the answers are unchanged (the export validates the pruned graph against the unpruned PyTorch model). At
128 tokens this removes 4 of the last layer's 6 GEMMs x 127/128: 13.5% of a DistilBERT-base forward pass."""
from __future__ import annotations

import copy

from runtimes.errors import ConfigError

CLS_TASKS = ("text-classification", "multiple-choice")


def saved_flops(config, seq: int) -> float:
    """FLOPs the pruning removes from one sequence of `seq` tokens (2 FLOPs per multiply-add)."""
    d, h = config.dim, config.hidden_dim
    return (seq - 1) * 2 * (2 * d * d + 2 * d * h) + 2 * 2 * (seq - 1) * seq * d


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

        def forward(self, hidden_states, attention_mask=None, **kwargs):
            from transformers.models.distilbert.modeling_distilbert import eager_attention_forward

            att, cls = self.layer.attention, hidden_states[:, :1]
            batch, size = hidden_states.shape[0], att.attention_head_size

            def heads(x):
                return x.view(batch, x.shape[1], -1, size).transpose(1, 2)

            if attention_mask is not None and attention_mask.dim() == 4:
                attention_mask = attention_mask[:, :, :1]  # the [CLS] query row of the additive mask
            out, _ = eager_attention_forward(att, heads(att.q_lin(cls)), heads(att.k_lin(hidden_states)),
                                             heads(att.v_lin(hidden_states)), attention_mask, scaling=att.scaling)
            out = self.layer.sa_layer_norm(att.out_lin(out.reshape(batch, 1, -1)) + cls)
            return self.layer.output_layer_norm(self.layer.ffn(out) + out)

    pruned = copy.deepcopy(model)
    layers = pruned.distilbert.transformer.layer
    if pruned.config._attn_implementation != "eager":
        raise ConfigError(f"[CLS] pruning reimplements eager attention; the model uses "
                          f"'{pruned.config._attn_implementation}'. Load it with attn_implementation='eager'")
    layers[-1] = ClsOnlyLayer(layers[-1])
    return pruned
