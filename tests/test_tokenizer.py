import socket

import pytest

from gpt_tui.engine import tokenizer


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the tokenizer tried to use the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_book_ids_offline(no_network, monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    tokenizer.get_tokenizer.cache_clear()
    assert tokenizer.encode("Every effort moves you") == [6109, 3626, 6100, 345]
    # tiktoken would copy the BPE files into its cache; the offline build must not.
    assert not (tmp_path / "tiktoken").exists()


def test_endoftext_is_special_only_when_allowed():
    assert tokenizer.encode("<|endoftext|>") == [tokenizer.EOT_ID]
    assert tokenizer.EOT_ID == 50256
    plain = tokenizer.encode("<|endoftext|>", allow_eot=False)
    assert tokenizer.EOT_ID not in plain and len(plain) > 1


def test_vocabulary_and_round_trip():
    enc = tokenizer.get_tokenizer()
    assert enc.n_vocab == tokenizer.VOCAB_SIZE == 50257
    text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace. Ünïcödé ✓"
    ids = tokenizer.text_to_token_ids(text)
    assert ids.shape[0] == 1 and ids.dtype.is_floating_point is False
    assert tokenizer.token_ids_to_text(ids) == text
    assert tokenizer.token_ids_to_text(ids[0].tolist()) == text
