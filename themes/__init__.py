"""gpt-tui's shipped themes, one TOML file each; installed as the package ``gpt_tui.themes``."""
