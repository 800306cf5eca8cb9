"""The Textual console: panes that draw, an app that dispatches, no model code.

Modules here import torch and the engine only inside functions, so the first
frame appears before torch has loaded.
"""
