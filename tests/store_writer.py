"""A writer process for the crash and concurrency tests: fills chunks of one entry.

Run as ``python store_writer.py STORE KEY N_ROWS CHUNK_ROWS CHUNKS DELAY``; CHUNKS is
"all" or a comma list. Each chunk's rows are a pure function of the row index, so any
run, interrupted or not, must produce the same bytes.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from featstore import open_store

ROW_WIDTH = 64


def expected_rows(start: int, stop: int) -> np.ndarray:
    rows = np.arange(start, stop, dtype=np.float64)[:, None]
    return np.sin(rows * 0.37 + np.arange(ROW_WIDTH)[None, :] * 0.11).astype(np.float16)


def main(url: str, key: str, n_rows: int, chunk_rows: int, chunks: str, delay: float) -> None:
    store = open_store(url)
    entry = store.create_entry(
        key, {"kind": "features", "writer": "test"}, (n_rows, ROW_WIDTH), chunk_rows=chunk_rows
    )
    todo = entry.missing_chunks() if chunks == "all" else [int(c) for c in chunks.split(",")]
    for index in todo:
        if index not in entry.missing_chunks():
            continue
        start, stop = entry.chunk_bounds(index)
        time.sleep(delay)  # stands in for the forward pass
        entry.write_chunk(index, expected_rows(start, stop))
        print(index, flush=True)
    store.close()


if __name__ == "__main__":
    main(
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]),
        sys.argv[5],
        float(sys.argv[6]),
    )
