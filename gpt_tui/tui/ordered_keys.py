"""An Input that handles every key in the order it was typed, however fast the keys come.

Textual delivers each key to the focused widget's message queue. An Input
inserts a character there and then, but a key bound to an action (Backspace,
End, Ctrl+U, Enter) is not handled there: the key bubbles up, through the
queue of every ancestor in turn, to the app, which only then runs the
widget's binding. Characters typed after it are inserted meanwhile, so
"Backspace x y z" gives "abcxy" and "End Ctrl+U N N" empties the field. It
happens whenever several keys reach the app before it gets to them — key
repeat, a pasted burst, SSH packing keys in one packet — and training makes it
common, because the UI thread then keeps busy between keys (folding events,
redrawing the chart) while the keys pile up.

``InOrderInput`` runs its own bindings (the editing keys, Enter, and those
of subclasses, with the user's keymap applied as Textual applies it) in its
own queue, when the key's turn comes, and stops the key bubbling. Keys bound
further up (F5, Esc on a screen) still bubble as before: they act on the
app, not on the text.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class InOrderInput(Input):
    """Input whose bound keys run in turn with the characters typed around them."""

    async def _on_key(self, event: events.Key) -> None:
        if event.is_printable:
            return  # Input's own handler inserts it
        for node, bindings in self.screen._modal_binding_chain:  # the focused widget's map comes first
            if node is not self:
                continue
            for binding in bindings.key_to_bindings.get(event.key, ()):
                if not binding.priority and await self.app.run_action(binding.action, self):
                    event.stop()
                    event.prevent_default()  # Input's and Widget's own key handlers are not needed
                    return
