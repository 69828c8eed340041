"""The featstore command-line application (installed as featstore.cli)."""
