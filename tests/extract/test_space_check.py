"""The free-space check: never refuses a cached run or a job that fits; names its reserve."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from featstore.errors import InsufficientSpaceError, SpecError
from featstore.extract.plan import RESERVE_ENV, check_space, space_reserve
from featstore.extract.request import check_dtype

MB = 1024 * 1024


def _plan(need: int, free: int | None) -> SimpleNamespace:
    return SimpleNamespace(missing_bytes=need, free_bytes=free, todo=[1], store_url="s.zarr")


def test_small_jobs_fit_on_a_small_disk(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(RESERVE_ENV, raising=False)
    check_space(_plan(30_000, 5 * MB))  # 30 KB on 5 MB free: refused before, fits now
    check_space(_plan(0, 0))  # a fully cached run needs nothing
    check_space(_plan(10**12, None))  # object storage: free space unknown
    assert space_reserve(5 * MB) == MB // 2
    assert space_reserve(10**12) == 64 * MB


def test_a_job_that_does_not_fit_is_refused_with_the_reserve_and_override(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv(RESERVE_ENV, raising=False)
    with pytest.raises(InsufficientSpaceError) as info:
        check_space(_plan(1000 * MB, 1000 * MB))
    assert str(info.value) == (
        "extraction needs up to 1.05 GB for 1 entries but the disk of s.zarr has 1.05 GB free, "
        f"less a reserve of 67.11 MB (set {RESERVE_ENV} to change it); free space, pool more "
        "(e.g. --pool avg) or use another --store"
    )
    monkeypatch.setenv(RESERVE_ENV, "0")
    check_space(_plan(1000 * MB, 1000 * MB))
    monkeypatch.setenv(RESERVE_ENV, "lots")
    with pytest.raises(SpecError, match=f"{RESERVE_ENV}='lots' is not a size in MB"):
        check_space(_plan(1, MB))


def test_only_float_storage_dtypes():
    assert check_dtype("float16") == "float16"
    for bad in ("int8", "float99", "uint8"):
        with pytest.raises(SpecError, match="use one of float16, float32, float64"):
            check_dtype(bad)
