"""A separate process for the sharing tests: extract into, evaluate from, or read a store.

Usage: python e2e_worker.py MODE URL STORAGE_OPTIONS_JSON [OWNER]
MODE: extract (lease-driven, unit by unit; OWNER and a pause per unit follow),
evaluate (SVM on the penultimate entry), read (sha256 of every entry's bytes).
Prints one JSON line.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

from featstore.extract.distributed import run_distributed
from featstore.extract.request import ExtractionRequest
from featstore.store import open_store

REQUEST = {
    "models": ["resnet18"],
    "layers": ["layer3", "avgpool"],
    "pooling": "avg",
    "views": ["plain"],
    "weights": "random",
    "preprocess": {"resize": 40, "crop": 32},
    "device": "cpu",
    "chunk_rows": 4,
}
RUN = {"batch_size": 4, "num_workers": 0, "threads": 1}  # how it runs: not part of the request


def extraction_request(dataset: object = "tiny") -> ExtractionRequest:
    r = dict(REQUEST)
    args = [r.pop("models"), r.pop("layers"), r.pop("pooling"), r.pop("views")]
    return ExtractionRequest.parse(dataset, *args, **r)


def entry_digests(store) -> dict[str, str]:
    return {
        key: hashlib.sha256(store.get_entry(key).read().tobytes()).hexdigest()
        for key in sorted(store.entry_keys())
    }


def main() -> None:
    mode, url, options = sys.argv[1:4]
    storage_options = json.loads(options) or None
    if mode == "extract":
        owner = sys.argv[4]
        pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0

        def slow_down(done: int, total: int, info: dict) -> None:
            time.sleep(pause)  # a real network is slower: gives the other writer a chance

        summary = run_distributed(
            url,
            extraction_request("tiny"),
            storage_options=storage_options,
            owner=owner,
            progress=slow_down,
            **RUN,
        )
        pairs = [[k, c] for u in summary["units"] for k, cs in u["chunks"].items() for c in cs]
        print(json.dumps({"chunks": pairs, "incomplete": summary["incomplete"]}))
    elif mode == "evaluate":
        from featstore.evaluate.probes.task import evaluate_classification

        store = open_store(url, storage_options=storage_options)
        key = next(
            k for k in store.entry_keys() if store.get_entry(k).attrs.get("layer") == "avgpool"
        )
        record = evaluate_classification(store, "tiny", key, transform="l2", classifier="svm")
        print(
            json.dumps(
                {
                    "key": record["key"],
                    "metrics": record["metrics"],
                    "digests": entry_digests(store),
                }
            )
        )
    elif mode == "read":
        store = open_store(url, mode="r", storage_options=storage_options)
        print(json.dumps({"digests": entry_digests(store), "results": store.result_keys()}))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
