"""``gpt-tui generate``: stream a continuation of a prompt to stdout, from saved weights or a fresh preset."""

from __future__ import annotations

import argparse
import errno
import sys
import time

from gpt_tui.cli import console
from gpt_tui.cli.inference import load_for_inference
from gpt_tui.engine.options import add_flags, given_flags
from gpt_tui.engine.sampling_config import SamplingConfig
from gpt_tui.errors import UserError
from gpt_tui.textsafe import printable

# Deferred imports: torch, tiktoken and the model load only when generating; `gpt-tui --help` imports this.


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gen = sub.add_parser("generate", help="stream a continuation of a prompt to stdout")
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint, a run (name or directory; RUN@best for its best checkpoint), or GPT-2 weights")
    source.add_argument("--model", help="a preset with fresh random weights")
    gen.add_argument("--prompt", required=True)
    add_flags(gen, SamplingConfig, defaults=True)
    gen.add_argument("--stop", action="append", default=[], help="stop at this string (repeatable)")
    gen.add_argument("--eos", action="store_true", help="stop at <|endoftext|>")
    gen.add_argument("--device", default="auto")
    gen.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16"),
        help="weights to decode with; auto: bf16 where it measured faster on this machine (gpt-tui doctor shows it)",
    )
    gen.add_argument("--stats", action="store_true", help="print time to first token and tokens/s to stderr")
    gen.set_defaults(func=cmd_generate)


def _note_long_prompt(prompt: str, context_length: int) -> None:
    """Say so when the model cannot see the whole prompt (it continues from the prompt's end)."""
    from gpt_tui.engine.tokenizer import encode

    count = len(encode(prompt))
    if count > context_length:
        console.write(
            sys.stderr,
            f"gpt-tui: note: the prompt is {count} tokens but this model reads at most {context_length}; "
            f"it continues from the last {context_length}. Shorten the prompt to keep its start in view.\n",
        )


def _stdout_failed(failures: list[OSError]) -> Exception:
    """What ends the command once stdout cannot be written: quiet for a reader that left (``| head``), else a line."""
    if failures and failures[-1].errno == errno.EPIPE:
        return BrokenPipeError()
    if failures:
        why = failures[-1].strerror or str(failures[-1])
        return UserError(f"Could not write the text to stdout ({why}). Free some space, or send it elsewhere.")
    return UserError("stdout is closed, so the text has nowhere to go. Run it with stdout open, or redirect it.")


def cmd_generate(args: argparse.Namespace) -> int:
    from gpt_tui.engine.generation import stream_text
    from gpt_tui.engine.weight_sources import weights_source  # a run name as `gpt-tui runs` prints it is a source too
    from gpt_tui.engine.tokenizer import EOT_ID, VOCAB_SIZE

    given = given_flags(args, SamplingConfig, {"top_k": VOCAB_SIZE})
    sampling = SamplingConfig(**given, stop_strings=tuple(args.stop), eos_id=EOT_ID if args.eos else None)
    sampling.validate(VOCAB_SIZE)
    if args.checkpoint:
        model = load_for_inference(weights_source(args.checkpoint), args.device)
    else:
        import torch

        from gpt_tui.engine.device import resolve_device
        from gpt_tui.engine.model import GPTModel, get_preset

        torch.manual_seed(args.seed or 0)
        model = GPTModel(get_preset(args.model)).to(resolve_device(args.device)).eval()
    from gpt_tui.engine.precision import decoding_line, prepare_for_inference

    model = prepare_for_inference(model, args.precision, sampling.quantize)
    if args.stats:
        console.say(decoding_line(model, args.precision), err=True)
    _note_long_prompt(args.prompt, model.config.context_length)
    start = time.perf_counter()
    first: float | None = None
    pieces = 0
    failures: list[OSError] = []
    stop_listening = console.on_failure(failures.append)
    try:  # each piece's control characters are made visible on their own, so an escape split across pieces is too
        if not console.write(sys.stdout, printable(args.prompt)):
            raise _stdout_failed(failures)
        for piece in stream_text(model, args.prompt, sampling):
            if first is None:
                first = time.perf_counter() - start
            pieces += 1
            if not console.write(sys.stdout, printable(piece)):
                raise _stdout_failed(failures)
        if not console.write(sys.stdout, "\n"):
            raise _stdout_failed(failures)
    finally:
        stop_listening()
    if args.stats:
        total = time.perf_counter() - start
        console.say(f"time to first token {first or 0:.3f}s, {pieces} pieces in {total:.2f}s", err=True)
    return 0
