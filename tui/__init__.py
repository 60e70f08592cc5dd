"""genml's terminal interfaces: the Textual app (`genml-tui`) and the commands (`genml`).

Imports core/, never TensorFlow at import time: the app paints before any model loads.
"""
