"""The featstore command-line application (installed as featstore.cli).

Its modules import each other relatively (``from .common import ...``): mypy checks this
folder as the package ``cli`` and cannot map ``featstore.cli`` onto it, so an absolute
``featstore.cli`` import would reach mypy as Any and leave the commands unchecked.
"""
