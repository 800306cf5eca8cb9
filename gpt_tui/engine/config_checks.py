"""The one place model configs read from files are checked: gpt-tui headers, config.json, hparams.json.

A config decides how large a model is built, so a value of the wrong type
or size (``n_heads`` 0, ``emb_dim`` "abc", ``n_layers`` a million,
``vocab_size`` 1e400) is refused here, naming the file and the value, before
anything is allocated. The loaders then read the checked values only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpt_tui.engine import file_checks as fc
from gpt_tui.engine.model import GPTConfig
from gpt_tui.errors import UserError

LAYER_NORM_EPS = 1e-5
# Activation names that are GPT-2's tanh-approximated GELU.
TANH_GELUS = frozenset({"gelu_new", "gelu_pytorch_tanh", "gelu_fast"})

# Sizes under every name the config files in use give them: key -> (smallest, largest).
_SIZES: dict[str, tuple[int, int]] = {
    **dict.fromkeys(("n_layer", "num_hidden_layers", "n_layers"), (1, fc.MAX_LAYERS)),
    **dict.fromkeys(("n_embd", "hidden_size", "emb_dim"), (1, fc.MAX_WIDTH)),
    **dict.fromkeys(("n_head", "num_attention_heads", "n_heads", "num_heads"), (1, fc.MAX_HEADS)),
    **dict.fromkeys(("vocab_size", "n_vocab"), (1, fc.MAX_VOCAB)),
    **dict.fromkeys(("n_positions", "max_position_embeddings", "n_ctx", "context_length"), (1, fc.MAX_CONTEXT)),
    "n_inner": (1, 4 * fc.MAX_WIDTH),
}
_FLAGS = ("tie_word_embeddings", "scale_attn_weights", "scale_attn_by_inverse_layer_idx", "qkv_bias", "tie_weights")
_RATES = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "drop_rate")


def json_config(raw: Any, where: Path) -> dict[str, Any]:
    """A config.json, hparams.json or sidecar JSON with every size, flag and name it sets checked."""
    config = fc.mapping(raw, "the config", where)
    for key, value in config.items():
        if value is None:
            continue
        if key in _SIZES:
            fc.whole(value, key, where, *_SIZES[key])
        elif key in _FLAGS:
            fc.flag(value, key, where)
        elif key in _RATES:
            fc.real(value, key, where, 0.0, 1.0)
        elif key == "layer_norm_epsilon":
            fc.real(value, key, where, 0.0, 1.0)
        elif key in ("model_type", "activation_function"):
            fc.text(value, key, where)
    return config


def check_gpt2_architecture(config: dict[str, Any] | None, where: Path) -> None:
    """Refuse a checked config.json the GPT-2 architecture here cannot reproduce, rather than load it wrongly."""
    if not config:
        return
    model_type = config.get("model_type") or "gpt2"
    if model_type != "gpt2":
        raise UserError(f"{where} describes a {model_type!r} model; gpt-tui loads GPT-2 models only.")
    activation = config.get("activation_function") or "gelu_new"
    if activation not in TANH_GELUS:
        raise UserError(f"{where} uses activation {activation!r}; gpt-tui's GPT-2 uses the tanh GELU (gelu_new).")
    eps = config.get("layer_norm_epsilon")
    if eps is not None and abs(eps - LAYER_NORM_EPS) > 1e-12:
        raise UserError(f"{where} sets layer_norm_epsilon {eps}; gpt-tui's GPT-2 uses {LAYER_NORM_EPS}.")
    n_inner, width = config.get("n_inner"), config.get("n_embd")
    if n_inner is not None and width is not None and n_inner != 4 * width:
        raise UserError(f"{where} sets n_inner {n_inner}; gpt-tui's GPT-2 has a feed-forward of 4 x n_embd = {4 * width}.")
    if config.get("scale_attn_weights", True) is False or config.get("scale_attn_by_inverse_layer_idx"):
        raise UserError(f"{where} changes GPT-2's attention scaling, which gpt-tui's model does not support.")


def model_config(raw: Any, where: Path) -> GPTConfig:
    """The ``config`` of a gpt-tui checkpoint header as a GPTConfig, every field checked first."""
    if raw is None:
        raise UserError(f"{where} has no model config in its header; it is damaged, so use an earlier checkpoint.")
    data = fc.mapping(raw, "config", where)
    defaults = GPTConfig()
    values: dict[str, Any] = {}
    for key in ("vocab_size", "context_length", "emb_dim", "n_layers", "n_heads"):
        if key not in data:
            raise UserError(f"{where}: the model config has no {key}; the header is damaged, so use an earlier checkpoint.")
        values[key] = fc.whole(data[key], key, where, *_SIZES[key])
    values["drop_rate"] = fc.real(data.get("drop_rate", defaults.drop_rate), "drop_rate", where, 0.0, 0.999)
    for key in ("qkv_bias", "tie_weights"):
        values[key] = fc.flag(data.get(key, getattr(defaults, key)), key, where)
    if values["emb_dim"] % values["n_heads"]:
        raise UserError(f"{where}: emb_dim {values['emb_dim']} is not divisible by n_heads {values['n_heads']}; "
                        "the header is damaged, so use an earlier checkpoint.")
    return GPTConfig(**values)
