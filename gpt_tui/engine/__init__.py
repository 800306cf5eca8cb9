"""The training and generation engine. Nothing under this package imports textual."""
