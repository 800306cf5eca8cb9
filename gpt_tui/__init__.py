"""gpt-tui: pre-train GPT-2-style language models in the terminal."""

__version__ = "0.1.0"
