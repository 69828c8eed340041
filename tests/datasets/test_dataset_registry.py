"""The registry at the bottom of datasets/: filled on first use, refusing duplicates."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from featstore.datasets import builtin_names, dataset_from_source, schemes
from featstore.datasets.images import load_image
from featstore.datasets.registry import (
    ImageProvider,
    Scheme,
    parse_source,
    register_image_provider,
    register_provider,
    register_scheme,
)
from featstore.errors import DatasetError

BENCHMARKS = {"voc2007", "flowers102", "pets", "cub200", "mit67", "sun397", "dtd", "food101"}
BENCHMARKS |= {"caltech101", "stanford40", "cars", "aircraft", "cifar10", "cifar100", "hf", "wds"}


def test_init_registers_builtins_retrieval_sets_and_benchmarks() -> None:
    assert builtin_names() == ["copydays", "digits"]
    names = set(schemes())
    assert names >= BENCHMARKS
    assert {"oxford", "paris", "revisited", "holidays", "ukbench"} <= names
    assert load_image("builtin:copydays/0").mode == "RGB"  # registered without importing retrieval


def test_the_registry_fills_on_first_use_not_at_import() -> None:
    """Importing featstore.datasets (as a cached read does) imports no PIL and no loader;
    the first lookups, from several threads at once, each see the whole registry."""
    code = textwrap.dedent(
        """
        import json, sys
        from concurrent.futures import ThreadPoolExecutor
        import featstore.datasets as ds
        before = sorted(m for m in ("PIL", "featstore.datasets.benchmarks") if m in sys.modules)
        with ThreadPoolExecutor(8) as pool:
            seen = list(pool.map(lambda _: (ds.builtin_names(), len(ds.schemes())), range(8)))
        print(json.dumps({"before": before, "seen": seen, "after": "PIL" in sys.modules,
                          "lazy": callable(ds.dataset_from_source)}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    child = json.loads(out.stdout)
    assert child["before"] == []
    n_schemes = len(schemes())
    assert child["seen"] == [[["copydays", "digits"], n_schemes]] * 8
    assert child["after"] is True
    assert child["lazy"] is True


def test_duplicates_are_refused() -> None:
    with pytest.raises(
        DatasetError, match="a builtin image provider named 'digits' is already registered"
    ):
        register_provider("digits", lambda i: load_image("builtin:digits/0"))
    with pytest.raises(DatasetError, match="provider named 'cifar' is already registered"):
        register_image_provider(ImageProvider("cifar", lambda loc: load_image("builtin:digits/0")))
    with pytest.raises(DatasetError, match="scheme named 'voc2007' is already registered"):
        register_scheme(Scheme("voc2007", lambda *a, **k: None, "something else"))
    register_scheme(schemes()["voc2007"])  # the same entry again is fine


def test_parse_source() -> None:
    ref = parse_source("sun397:/data/sun?fold=3")
    assert ref is not None
    assert ref.scheme.name == "sun397"
    assert ref.path == "/data/sun"
    assert dict(ref.options) == {"fold": "3"}
    assert parse_source("/data/folder") is None
    assert parse_source("notascheme:/x") is None
    with pytest.raises(
        DatasetError,
        match=r"caltech101: takes no option 'fold' \(its options: seed, train, background\)",
    ):
        parse_source("caltech101:/x?fold=1")


def test_bad_provider_refs() -> None:
    with pytest.raises(DatasetError, match=r"image ref 'builtin:nosuch/1' names no built-in image"):
        load_image("builtin:nosuch/1")
    with pytest.raises(DatasetError, match=r"digits refs end in a row number"):
        load_image("builtin:digits/x")
    with pytest.raises(DatasetError, match=r"CIFAR batch /nowhere/data_batch_1 does not exist"):
        load_image("builtin:cifar//nowhere/data_batch_1#3")
    with pytest.raises(DatasetError, match="no built-in dataset 'nope'"):
        dataset_from_source("x", "builtin:nope")
