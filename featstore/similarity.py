"""Representational similarity (public): linear / RBF / minibatch CKA and RSA with its RDMs.

The implementation lives in :mod:`featstore.evaluate.similarity.measures`; this module is the stable
import path, ``from featstore.similarity import linear_cka``.
"""

from __future__ import annotations

from featstore.evaluate.similarity.measures import *  # noqa: F403
from featstore.evaluate.similarity.measures import __all__  # noqa: F401
