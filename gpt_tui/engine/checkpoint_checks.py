"""The one place a gpt-tui checkpoint's header and tensor table are checked, before any tensor is read.

The header's config implies the exact name, shape and dtype of every model
tensor, so those are compared with the safetensors table (which the file's
real size already bounds) before a model is built: a header claiming a
million layers over a file of two is refused in milliseconds, not after
minutes and gigabytes. The resume state (counters, optimizer groups, RNG)
is checked here too, so a damaged one fails before training starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gpt_tui.engine import file_checks as fc
from gpt_tui.engine.model import GPTConfig
from gpt_tui.errors import UserError

KINDS = frozenset({"full", "model"})
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
TORCH_RNG_BYTES = 5056  # torch.get_rng_state(): the Mersenne Twister state and the normal-distribution cache
_BLOCK = re.compile(r"model\.blocks\.(\d+)\.")
_OPTIMIZER_NUMBERS = ("lr", "eps", "weight_decay", "initial_lr")
_OPTIMIZER_FLAGS = ("amsgrad", "maximize", "capturable", "differentiable", "foreach", "fused", "decoupled_weight_decay")


def header_fields(header: Any, where: Path) -> dict[str, Any]:
    """The header's top level: an object whose kind, train state, meta and optimizer groups have the right types."""
    header = fc.mapping(header, "the gpt_tui header", where)
    fc.text(header.get("kind", "model"), "kind", where, KINDS)
    fc.whole(header.get("version", 0), "version", where, 0, 1 << 31)
    for key in ("train_state", "meta"):
        fc.mapping(header.get(key, {}), key, where)
    groups = header.get("param_groups", [])
    if not isinstance(groups, list):
        raise fc.refuse(where, "param_groups", groups, "a list of optimizer groups")
    for i, group in enumerate(groups):
        group = fc.mapping(group, f"param_groups[{i}]", where)
        names = group.get("param_names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise fc.refuse(where, f"param_groups[{i}].param_names", names, "a list of parameter names")
        for key in _OPTIMIZER_NUMBERS:
            if key in group:
                fc.real(group[key], f"param_groups[{i}].{key}", where)
        betas = group.get("betas", [0.9, 0.999])
        if not isinstance(betas, list) or len(betas) != 2:
            raise fc.refuse(where, f"param_groups[{i}].betas", betas, "two numbers from 0 to 1")
        for beta in betas:
            fc.real(beta, f"param_groups[{i}].betas", where, 0.0, 0.999999)
        for key in _OPTIMIZER_FLAGS:
            if group.get(key) is not None:
                fc.flag(group[key], f"param_groups[{i}].{key}", where)
    return header


def model_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint of ``config`` stores under ``model.`` (a tied head is stored once)."""
    d, v = config.emb_dim, config.vocab_size
    block = {
        "ln1.weight": (d,), "ln1.bias": (d,),
        "attn.qkv.weight": (3 * d, d), **({"attn.qkv.bias": (3 * d,)} if config.qkv_bias else {}),
        "attn.proj.weight": (d, d), "attn.proj.bias": (d,),
        "ln2.weight": (d,), "ln2.bias": (d,),
        "mlp.fc.weight": (4 * d, d), "mlp.fc.bias": (4 * d,),
        "mlp.proj.weight": (d, 4 * d), "mlp.proj.bias": (d,),
    }
    shapes = {"model.tok_emb.weight": (v, d), "model.pos_emb.weight": (config.context_length, d)}
    for i in range(config.n_layers):
        shapes.update({f"model.blocks.{i}.{k}": s for k, s in block.items()})
    shapes.update({"model.ln_f.weight": (d,), "model.ln_f.bias": (d,)})
    if not config.tie_weights:
        shapes["model.head.weight"] = (v, d)
    return shapes


def tensor_table(config: GPTConfig, table: dict[str, tuple[str, tuple[int, ...]]], where: Path) -> None:
    """Refuse a file whose tensors (name -> (dtype, shape), from its header) are not the ones ``config`` implies."""
    model = {k: info for k, info in table.items() if k.startswith("model.")}
    blocks = {int(m.group(1)) for k in model if (m := _BLOCK.match(k))}
    if len(blocks) != config.n_layers:  # compared first: the expected table grows with the claimed layer count
        raise UserError(f"{where}: the header says n_layers {config.n_layers} but the file holds {len(blocks)} "
                        "transformer blocks; it is damaged, so use an earlier checkpoint.")
    expected = model_shapes(config)
    for key, shape in expected.items():
        if key not in model:
            raise UserError(f"{where} lacks tensor {key} that its header's config needs; use an earlier checkpoint.")
        if tuple(model[key][1]) != shape:
            raise UserError(f"{where}: tensor {key} has shape {list(model[key][1])} but the header's config "
                            f"needs {list(shape)}; the file is damaged, so use an earlier checkpoint.")
    extra = sorted(set(model) - set(expected))
    if extra:
        raise UserError(f"{where} holds tensor {extra[0]}, which the model its header describes does not have.")
    dtypes = {info[0] for info in model.values()}
    if len(dtypes) != 1 or not dtypes <= FLOAT_DTYPES:
        raise UserError(f"{where} holds model tensors of dtypes {', '.join(sorted(dtypes))}; a checkpoint holds one "
                        "floating-point dtype (F16, BF16, F32 or F64) throughout, so this file is damaged.")
    rng = table.get("rng.torch")
    if rng is not None and (rng[0] != "U8" or tuple(rng[1]) != (TORCH_RNG_BYTES,)):
        raise UserError(f"{where}: its random-number state rng.torch is {rng[0]} of shape {list(rng[1])}, not "
                        f"{TORCH_RNG_BYTES} bytes; resume from an earlier checkpoint, or use --init-from.")
