"""Listing benchmark (issue 24 item 3): `ls`, a fully cached sweep plan and `report` on a
store of many entries and records, on loopback S3 (moto) beside local disk.

Builds a local store with a tiny sweep (generated images, a two-layer network: its entries
and records are real), then adds filler entries (tiny one-chunk arrays) and sealed records
up to ``--entries`` and ``--records``, copies it to a bucket of a moto server started here
(its consolidated metadata and result catalog written as a sweep leaves them), and runs
each command in this process (imports warmed first) on both stores. Request counts come
from the moto server's own request log (its recorder); a command must stay within
50 requests + 1 per 1,000 objects and 5 s on S3, 1 s on local disk (printed, not asserted).
Wall seconds count on an idle machine only; the CPU seconds (user + system of this
process, the moto server's excluded) are what to compare on a busy one.

Usage:
  python benchmarks/listing.py [--entries 1000] [--records 5000]
  python benchmarks/listing.py --smoke      # 30 entries, 100 records
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

TINY = "_smoke:tiny_net"
ENV = {
    "AWS_ACCESS_KEY_ID": "featstore-bench",
    "AWS_SECRET_ACCESS_KEY": "featstore-bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Moto:
    """A moto S3 server on loopback whose recorder logs every request it answers."""

    def __init__(self, work: Path) -> None:
        self.log = work / "moto-requests.jsonl"
        self.endpoint = f"http://127.0.0.1:{free_port()}"
        port = self.endpoint.rsplit(":", 1)[1]
        env = {**os.environ, **ENV, "MOTO_RECORDER_FILEPATH": str(self.log)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-p", port, "-H", "127.0.0.1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=work,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the moto server did not start") from None
                time.sleep(0.2)

    def _post(self, action: str) -> None:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/recorder/{action}", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def start(self) -> None:
        self._post("reset-recording")
        self._post("start-recording")

    def stop(self) -> int:
        """Requests answered since :meth:`start`."""
        self._post("stop-recording")
        with open(self.log) as f:
            return sum(1 for line in f if line.strip())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def smoke_spec(work: Path) -> Path:
    from _smoke import image_folder

    folder = image_folder(work / "imgs", train=4, test=2, size=32)
    spec = work / "sweep.yaml"
    spec.write_text(
        f"name: listing\ndatasets: [{{name: shapes, source: {folder}, tasks: [classify]}}]\n"
        f'networks: [{{name: "{TINY}", layers: [flat, conv]}}]\npooling: [avg]\n'
        "transforms: [l2]\nclassifiers: [logreg]\nbaseline: {layer: flat}\nseed: 0\n"
    )
    return spec


def build(root: Path, spec: Path, n_entries: int, n_records: int) -> dict[str, int]:
    """The sweep's real entries and records, then filler up to the asked numbers."""
    from featstore import open_store
    from featstore.api import run_sweep
    from featstore.store.proofs import seal_record

    store = open_store(str(root))
    summary = run_sweep(store, str(spec))
    assert not summary["failed"], summary["failed"]
    real = store.get_results()
    template = dict(next(iter(real.values())))
    rng = np.random.default_rng(0)
    n = len(store.entry_keys())
    for i in range(max(0, n_entries - n)):
        key = f"feat-{i:020x}"
        attrs = {"kind": "features", "dataset_name": "filler", "model_name": "filler-net",
                 "layer": f"l{i}", "pooling": "avg", "view": "plain"}  # fmt: skip
        entry = store.create_entry(key, attrs, (4, 3), dtype="float16", chunk_rows=4)
        entry.write_chunk(0, rng.normal(size=(4, 3)))
    for i in range(max(0, n_records - len(real))):
        key = f"res-{i:020x}"
        record = {**template, "key": key, "seed": 1000 + i, "dataset_name": "filler"}
        record.pop("checksum", None)
        store.put_result(key, seal_record(record))
    return {"entries": len(store.entry_keys()), "records": len(store.result_keys())}


def upload(root: Path, work: Path, endpoint: str) -> str:
    """Copy the local store into a fresh bucket, consolidated as a remote store keeps it."""
    import s3fs
    import zarr
    from zarr.storage import LocalStore

    from featstore import open_store

    staging = work / "staging.zarr"
    shutil.copytree(root, staging)
    zarr.consolidate_metadata(LocalStore(str(staging)))
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    bucket = f"listing-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    files = {  # one concurrent batch of PUTs
        f"{bucket}/s.zarr/{p.relative_to(staging).as_posix()}": p.read_bytes()
        for p in staging.rglob("*")
        if p.is_file()
    }
    fs.pipe(files)
    shutil.rmtree(staging)
    url = f"s3://{bucket}/s.zarr"
    store = open_store(url, storage_options={"client_kwargs": {"endpoint_url": endpoint}})
    store.refresh_catalog()  # what the end of a sweep leaves
    return url


def commands(store: str, spec: Path, endpoint: str | None) -> dict[str, list[str]]:
    opt = ["--storage-option", f"endpoint_url={endpoint}"] if endpoint else []
    return {
        "ls": ["ls", "--store", store, "--json", *opt],
        "sweep plan (cached)": ["sweep", str(spec), "--dry-run", "--store", store, "--json", *opt],
        "report": ["report", "--store", store, "--json", *opt],
    }


def run(args: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of this process: user + system, output) of one command."""
    from click.testing import CliRunner
    from featstore.cli.main import cli

    t0, c0 = time.perf_counter(), time.process_time()
    result = CliRunner().invoke(cli, args)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if result.exit_code != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{result.output[-2000:]}")
    return seconds, cpu, result.output


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1000)
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--smoke", action="store_true", help="30 entries, 100 records")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.entries, args.records = 30, 100
    os.environ.update(ENV)
    work = Path(tempfile.mkdtemp(prefix="listing-"))
    moto = Moto(work)
    try:
        spec = smoke_spec(work)
        root = work / "local.zarr"
        t0 = time.perf_counter()
        sizes = build(root, spec, args.entries, args.records)
        t_build = time.perf_counter() - t0
        url = upload(root, work, moto.endpoint)
        t_upload = time.perf_counter() - t0 - t_build
        objects = sum(1 for p in root.rglob("*") if p.is_file())
        limit_requests = 50 + objects // 1000
        rows: list[dict[str, Any]] = []
        for where, store, endpoint in (("local", str(root), None), ("s3", url, moto.endpoint)):
            for name, argv in commands(store, spec, endpoint).items():
                run(argv)  # warm: imports, this process's first open
                if where == "s3":
                    moto.start()
                seconds, cpu, _ = run(argv)
                requests = moto.stop() if where == "s3" else None
                limit_s = 5.0 if where == "s3" else 1.0
                ok = seconds <= limit_s and (requests is None or requests <= limit_requests)
                rows.append({"store": where, "command": name, "seconds": round(seconds, 3),
                             "cpu_seconds": round(cpu, 3), "requests": requests,
                             "within_limits": ok})  # fmt: skip
    finally:
        moto.close()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({**sizes, "objects": objects, "rows": rows}, indent=1))
        return
    print(
        f"store: {sizes['entries']} entries, {sizes['records']} records, {objects} objects "
        f"(built in {t_build:.1f} s, uploaded in {t_upload:.1f} s)"
    )
    print(f"limits: S3 <= 5 s and <= {limit_requests} requests; local disk <= 1 s")
    print(
        f"{'store':<6} {'command':<22} {'seconds':>8} {'cpu s':>7} {'requests':>9}  within limits"
    )
    for r in rows:
        req = "-" if r["requests"] is None else str(r["requests"])
        verdict = "yes" if r["within_limits"] else "NO"
        print(
            f"{r['store']:<6} {r['command']:<22} {r['seconds']:>8.3f} {r['cpu_seconds']:>7.3f} "
            f"{req:>9}  {verdict}"
        )
    for r in rows:
        if r["store"] == "s3":
            print(f"  s3 {r['command']}: requests = {r['requests']}, seconds = {r['seconds']:.3f}")


if __name__ == "__main__":
    main()
