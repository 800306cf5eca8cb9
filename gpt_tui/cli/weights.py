"""``gpt-tui export``, ``gpt-tui download`` and ``gpt-tui import``: moving GPT-2 weights in and out.

Registered by the main parser (gpt_tui.cli); torch and huggingface_hub are
imported only when one of these commands runs.
"""

from __future__ import annotations

import argparse

from gpt_tui.errors import UserError

EXPORT_FORMATS = {"hf": "hf", "huggingface": "hf", "gguf": "gguf"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = subparsers.add_parser(
        "export",
        help="write weights in another format (hf: model.safetensors + config.json for transformers; "
        "gguf: one file for llama.cpp)",
    )
    export.add_argument("--checkpoint", required=True, help="a checkpoint, run directory, or GPT-2 weights")
    export.add_argument(
        "--to",
        nargs=2,
        required=True,
        metavar=("FORMAT", "PATH"),
        help="target format and place: --to hf DIR (for transformers) or --to gguf FILE.gguf (for llama.cpp)",
    )
    export.add_argument("--type", help="GGUF tensor type: f32 (default), bf16 or q8_0")
    export.set_defaults(func=cmd_export)

    download = subparsers.add_parser(
        "download",
        help="fetch OpenAI's GPT-2 weights from the Hugging Face Hub into its local cache",
    )
    download.add_argument("model", help="gpt2, gpt2-medium, gpt2-large or gpt2-xl")
    download.add_argument("--cache-dir", help="Hugging Face cache folder (default: HF_HUB_CACHE or ~/.cache/huggingface/hub)")
    download.set_defaults(func=cmd_download)

    imp = subparsers.add_parser(
        "import",
        help="convert weights (Hugging Face, TensorFlow, state dict) into a gpt-tui checkpoint",
    )
    imp.add_argument("source", help="a folder, file, or Hugging Face model id in the local cache")
    imp.add_argument("--name", help="name to save it under (default: from the source)")
    imp.add_argument("--force", action="store_true", help="replace a model of that name imported before")
    imp.set_defaults(func=cmd_import)


def cmd_export(args: argparse.Namespace) -> int:
    from gpt_tui.engine.weights import export_hf

    fmt, out_dir = args.to
    kind = EXPORT_FORMATS.get(fmt.lower())
    if kind is None:
        raise UserError(f"Unknown export format {fmt!r}; the supported ones are hf (e.g. --to hf ./my-model) "
                        "and gguf (e.g. --to gguf model.gguf).")
    if kind == "gguf":
        from gpt_tui.engine.gguf_export import export_gguf

        gguf_type = (args.type or "f32").lower()
        path = export_gguf(args.checkpoint, out_dir, gguf_type)
        from gpt_tui.textsafe import visible

        print(f"Exported {visible(args.checkpoint)} to {visible(str(path))} (GGUF, {gguf_type}); load it with llama.cpp, "
              f"e.g. llama-cli -m {visible(str(path))}.")
        return 0
    if args.type is not None:
        raise UserError("--type applies to --to gguf only; an hf export is always float32.")
    out = export_hf(args.checkpoint, out_dir)
    print(f"Exported {args.checkpoint} to {out} (model.safetensors, config.json); "
          "load it with transformers.GPT2LMHeadModel.from_pretrained.")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from gpt_tui.engine import hub

    folder = hub.download(args.model, cache_dir=args.cache_dir)
    name = hub.canonical_name(args.model) or args.model
    print(f"{name} is in {folder}")
    if args.cache_dir:
        print(f"Use it with: gpt-tui generate --checkpoint {folder} --prompt \"Every effort moves you\"")
    else:
        print(f"Use it with: gpt-tui generate --checkpoint {name} --prompt \"Every effort moves you\"")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from gpt_tui.engine.weights import import_weights

    path = import_weights(args.source, args.name, overwrite=args.force)
    name = path.stem
    print(f"Imported {args.source} as {name}: {path}")
    print(f"Use it with: gpt-tui generate --checkpoint {name} --prompt \"...\", "
          f"or fine-tune it with: gpt-tui train --init-from {name}")
    return 0
