"""The source table of the network registry (``register_source``), the one HF cache lookup,
and the images-id check that keys.py owns."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from featstore.errors import InvalidKeyError, ModelError, StoreError, UnknownModelError
from featstore.keys import check_images_id
from featstore.models import registry
from featstore.models.registry import get_spec, register_source, sources
from featstore.models.spec import ModelSpec, Preprocess
from featstore.models.weights import hf_cached_file


@pytest.fixture
def fake_source():
    """A 'fakesrc:NAME' source for one test, removed afterwards."""
    calls: list[str] = []

    def factory(name: str) -> ModelSpec:
        calls.append(name)
        return ModelSpec(
            name=f"fakesrc:{name}",
            family="fake",
            source="fakesrc",
            builder=lambda: nn.Identity(),
            preprocess=Preprocess(),
            layers=(),
            description="a test source",
        )

    register_source("fakesrc", factory, "a fake network as 'fakesrc:NAME'")
    yield factory, calls
    registry._SOURCES.pop("fakesrc", None)
    registry._dynamic_spec.cache_clear()


def test_the_three_sources_register_themselves() -> None:
    found = sources()
    assert {"timm", "hf", "open_clip"} <= set(found)
    assert found["timm"].factory.__module__ == "featstore.models.timm_source"
    assert found["hf"].factory.__module__ == "featstore.models.hf_source"
    assert found["open_clip"].factory.__module__ == "featstore.models.open_clip_source"


def test_a_registered_prefix_builds_its_spec_from_the_table(fake_source) -> None:
    _, calls = fake_source
    spec = get_spec("fakesrc:tiny")
    assert spec.name == "fakesrc:tiny"
    assert calls == ["tiny"]
    assert get_spec("fakesrc:tiny") is spec
    assert calls == ["tiny"]


def test_a_duplicate_prefix_is_refused(fake_source) -> None:
    factory, _ = fake_source
    register_source("fakesrc", factory)  # the same module imported again: no change
    assert sources()["fakesrc"].usage == "a fake network as 'fakesrc:NAME'"
    with pytest.raises(ModelError, match="'fakesrc:' is already registered"):
        register_source("fakesrc", lambda name: factory(name))
    with pytest.raises(ModelError, match="already registered"):
        register_source("timm", lambda name: factory(name))


def test_a_prefix_must_be_a_word() -> None:
    with pytest.raises(ModelError, match="is a word"):
        register_source("a/b", lambda name: None)  # type: ignore[arg-type,return-value]


def test_an_unknown_name_lists_every_source_in_order(fake_source) -> None:
    with pytest.raises(UnknownModelError) as info:
        get_spec("no_such_network_here")
    text = str(info.value)
    forms = [
        "a timm model as 'timm:NAME'",
        "a Hugging Face model as 'hf:DIR_OR_CACHED_ID'",
        "an OpenCLIP tower as 'open_clip:ARCH'",
        "a fake network as 'fakesrc:NAME'",
    ]
    positions = [text.index(form) for form in forms]
    assert positions == sorted(positions)


def test_hf_cached_file_returns_the_first_file_in_the_cache(monkeypatch, tmp_path: Path) -> None:
    import huggingface_hub

    present = tmp_path / "pytorch_model.bin"
    present.write_bytes(b"x")
    answers = {
        "model.safetensors": object(),  # huggingface_hub's "known not to exist" sentinel
        "gone.bin": str(tmp_path / "gone.bin"),  # a dangling cache path
        "pytorch_model.bin": str(present),
    }
    monkeypatch.setattr(
        huggingface_hub, "try_to_load_from_cache", lambda repo, filename: answers.get(filename)
    )
    assert hf_cached_file("org/m", ("model.safetensors", "gone.bin", "pytorch_model.bin")) == str(
        present
    )
    assert hf_cached_file("org/m", ("model.safetensors", "gone.bin", "absent.json")) is None


@pytest.mark.parametrize(
    "value", ["img-" + "0" * 39, "img-" + "A" * 40, "img-" + "0" * 40 + "\n", "../x", "", None, 7]
)
def test_check_images_id_refuses_what_is_not_an_images_id(value: object) -> None:
    with pytest.raises(InvalidKeyError, match="is not an images id") as info:
        check_images_id(value)
    assert isinstance(info.value, StoreError)  # what store callers caught before


def test_check_images_id_returns_a_good_one() -> None:
    good = "img-" + "0123456789abcdef" * 2 + "01234567"
    assert check_images_id(good) == good
