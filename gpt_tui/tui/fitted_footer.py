"""A footer that shows only the keys that fit, whole: a narrow terminal loses its least-used keys, never half a word.

Textual's Footer lays every shown key in a row and the terminal's edge cuts
the last one mid-word ("f6 Sto"). This one measures each key as Footer draws
it and leaves out, in ``DROP_ORDER``, those that would not fit beside the
command palette's key. The compact layout's pane key shows only there.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

# Left out first when the row is too narrow (binding ids; a key not named here goes before these).
DROP_ORDER = ("app.runs", "chart.mode", "app.settings", "train.stop", "app.help", "layout.pane", "app.quit", "train.toggle")
PANE_BINDING = "layout.pane"
LAST_PADDING = 1  # the last key's trailing space may run under the palette key's border: no letter is lost


def key_width(key: FooterKey) -> int:
    """Cells a key takes in a non-compact Footer: " key " then "description "."""
    width = Text(key.key_display).cell_len + 2
    if key.description:
        width += Text(key.description).cell_len + 1
    return width


def keep_fitting(widths: list[int], ranks: list[int], room: int) -> set[int]:
    """Indexes of the keys to keep: drop the lowest-ranked (smallest rank first) until the rest fit in ``room``."""
    kept = set(range(len(widths)))
    for index in sorted(kept, key=lambda i: (ranks[i], -i)):
        if sum(widths[i] for i in kept) <= room:
            break
        kept.discard(index)
    return kept


class FittedFooter(Footer):
    """Footer with :meth:`fit`, which the layout calls with the width the terminal has now."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.width = 0
        self.compact_layout = False

    def fit(self, width: int, compact_layout: bool) -> None:
        self.width, self.compact_layout = width, compact_layout
        self._hide_overflow()

    async def recompose(self) -> None:
        """Footer recomposes when the bindings change: the new keys are fitted again."""
        await super().recompose()
        self._hide_overflow()

    def _binding_ids(self) -> dict[str, str]:
        return {binding.action: binding.id or "" for _node, binding, _on, _tip in self.screen.active_bindings.values()}

    def _hide_overflow(self) -> None:
        if not self.is_attached:
            return
        keys = list(self.query(FooterKey))
        palette = [key for key in keys if key.has_class("-command-palette")]
        keys = [key for key in keys if not key.has_class("-command-palette")]
        ids = self._binding_ids()
        key_ids = [ids.get(key.action, "") for key in keys]
        room = (self.width or self.app.size.width) - sum(key_width(key) for key in palette) + LAST_PADDING
        candidates = [i for i, key_id in enumerate(key_ids) if self.compact_layout or key_id != PANE_BINDING]
        ranks = [DROP_ORDER.index(key_ids[i]) if key_ids[i] in DROP_ORDER else -1 for i in candidates]
        kept = keep_fitting([key_width(keys[i]) for i in candidates], ranks, room)
        shown = {candidates[j] for j in kept}
        for index, key in enumerate(keys):
            key.display = index in shown
