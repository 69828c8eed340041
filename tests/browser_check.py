"""Headless Chromium for the HTML report tests: found, skipped with a reason, or required.

Outside CI a machine without Chromium skips the browser tests with a reason pytest prints
in its summary (``-ra``): they did not run, and nothing pretends they passed. ``.ci/run``
installs Chromium and sets ``FEATSTORE_REQUIRE_CHROMIUM=1``, which turns that skip (and
``FEATSTORE_SKIP_BROWSER=1``) into a failure, so CI cannot go green without them.
"""

from __future__ import annotations

import os
import shutil

import pytest

INSTALL = "apt-get update && apt-get install -y chromium"
REQUIRE_ENV = "FEATSTORE_REQUIRE_CHROMIUM"
SKIP_ENV = "FEATSTORE_SKIP_BROWSER"


def chromium_or_skip() -> str:
    """The path of a Chromium binary; else skip (or fail where it is required)."""
    required = os.environ.get(REQUIRE_ENV) == "1"
    if os.environ.get(SKIP_ENV) == "1":
        if required:
            pytest.fail(f"{SKIP_ENV}=1 and {REQUIRE_ENV}=1: the browser test is required here")
        pytest.skip(f"{SKIP_ENV}=1: headless Chromium check NOT RUN, on request")
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    reason = f"chromium is not on PATH: headless Chromium check NOT RUN (install it: {INSTALL})"
    if required:
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)
