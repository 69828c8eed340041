"""A writer process for the two-writers tests: fills what it can lease of one entry.

Usage: python lease_worker.py URL STORAGE_OPTIONS_JSON KEY OWNER DELAY_S
Prints the JSON list of the chunk indices this process wrote.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from featstore.store import open_store
from featstore.store.lease import fill_with_leases


def expected_rows(start: int, stop: int, row_shape: tuple[int, ...]) -> np.ndarray:
    """The rows any writer computes for [start, stop): a pure function of the row index."""
    width = int(np.prod(row_shape))
    values = np.sin(np.arange(start * width, stop * width, dtype=np.float64) / 7.0)
    return values.reshape(stop - start, *row_shape).astype(np.float32)


def main() -> None:
    url, options, key, owner, delay = sys.argv[1:6]
    store = open_store(url, storage_options=json.loads(options) or None)
    entry = store.get_entry(key)

    def compute(start: int, stop: int) -> np.ndarray:
        time.sleep(float(delay))  # a forward pass takes a while: lets the writers interleave
        return expected_rows(start, stop, entry.row_shape)

    written = fill_with_leases(entry, compute, owner=owner, ttl=60.0)
    print(json.dumps(written))


if __name__ == "__main__":
    main()
