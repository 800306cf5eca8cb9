"""Which ``[keys]`` entries of settings.toml the app can bind, and a notice for each it cannot.

Textual takes any string as a key and any name as a binding id, and a key it
will never receive, or an id no binding has, then does nothing without a word.
Each entry is checked against the key names Textual produces (textual.keys)
and the binding ids the app's widgets and screens declare, so a typo gets a
notice like every other bad setting.
"""

from __future__ import annotations

from typing import Iterable

from textual import keys as textual_keys
from textual.binding import Binding
from textual.dom import DOMNode

from gpt_tui.textsafe import visible

MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
_NAMED = frozenset(
    [key.value.rpartition("+")[2] for key in textual_keys.Keys]
    + [alias.rpartition("+")[2] for aliases in textual_keys.KEY_ALIASES.values() for alias in aliases]
    + list(textual_keys.KEY_NAME_REPLACEMENTS.values()) + list(textual_keys.ASCII_KEY_NAMES.values())
)


def _key_known(name: str) -> bool:
    """Whether Textual can report this key (without modifiers): a named key, a character, or a character's name."""
    if name in _NAMED:
        return True
    if len(name) == 1:
        return name.isprintable() and not name.isspace()
    return textual_keys.key_to_character(name) is not None


def key_problem(keys: str) -> str | None:
    """Why ``keys`` (Textual's comma-separated list, e.g. ``f5,ctrl+t``) cannot be bound, or None."""
    for key in keys.split(","):
        key = key.strip()
        if not key:
            return "has an empty key between its commas"
        *modifiers, name = key.split("+") if key != "+" else [key]
        unknown = [m for m in modifiers if m not in MODIFIERS]
        if unknown:
            return f"uses '{visible(unknown[0])}', which is not a modifier (ctrl, shift, alt, meta, super or hyper)"
        if not _key_known(name):
            return f"names '{visible(name)}', which is no key Textual knows"
    return None


def binding_ids(classes: Iterable[type] | None = None) -> set[str]:
    """Every binding id declared by ``classes`` (default: each widget, screen and app class loaded, Textual's too)."""
    if classes is None:
        found: list[type] = []
        stack: list[type] = [DOMNode]
        while stack:
            cls = stack.pop()
            stack.extend(cls.__subclasses__())
            found.append(cls)
        classes = found
    return {b.id for cls in classes for b in cls.__dict__.get("BINDINGS", ()) if isinstance(b, Binding) and b.id}


def usable_keymap(keymap: dict[str, str], known_ids: set[str]) -> tuple[dict[str, str], list[str]]:
    """The entries the app can bind, and one notice for each it cannot (naming the entry)."""
    good: dict[str, str] = {}
    problems: list[str] = []
    for binding_id, keys in keymap.items():
        where = f"[keys] {visible(binding_id)} = '{visible(keys)}' in settings.toml"
        if binding_id not in known_ids:
            problems.append(f"{where}: no binding has that id (the help screen, F1, lists them); it is ignored.")
            continue
        problem = key_problem(keys)
        if problem is not None:
            problems.append(f"{where} {problem}; it is ignored. Use names such as 'f5' or 'ctrl+t'.")
            continue
        good[binding_id] = keys
    return good, problems
