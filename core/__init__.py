"""genml's domain: datasets, jobs, models, prediction and the two backends.

Nothing here imports Textual or any other UI code (checked by import-linter and
tests/test_layers.py), so the CLI, the TUI and scripts share one implementation.
"""
