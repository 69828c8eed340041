"""Fine-tuning as a sweep factor (issue 26, item 4): a spec's ``finetune:`` entries are
trained once, extracted and evaluated beside their frozen parent; a rerun trains and
extracts nothing; every field is checked before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.datasets import dataset_from_source
from featstore.errors import SpecError
from featstore.finetune import train as train_mod
from featstore.settings import record_setting
from featstore.store import open_store
from featstore.store import trained as nets
from featstore.sweep.spec import parse_spec

FT_DIR = Path(__file__).resolve().parents[1] / "finetune"
NET = "tiny_nets:cnn"

SPEC = f"""
name: ft-study
datasets: [{{name: tiny, tasks: [classify]}}]
networks: [{{name: "{NET}", layers: [flat]}}]
finetune:
  - {{name: tiny-ft, network: "{NET}", layers: [flat], epochs: 2, batch_size: 8, keep_every: 1}}
  - {{name: tiny-frozen, network: "{NET}", layers: [flat], epochs: 1, batch_size: 8, freeze: bn1}}
pooling: [avg]
transforms: [l2]
classifiers: [logreg]
baseline: {{network: "{NET}"}}
extract: {{batch_size: 8, device: cpu}}
"""


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "fscache"))
    monkeypatch.syspath_prepend(str(FT_DIR))
    from tiny_nets import make_images

    url = str(tmp_path / "s.zarr")
    open_store(url).put_dataset(dataset_from_source("tiny", str(make_images(tmp_path / "imgs"))))
    return url


def _spec(tmp_path: Path, text: str = SPEC) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


def _sweep(store_url: str, spec: str, *extra: str) -> object:
    return CliRunner().invoke(cli, ["sweep", spec, "--store", store_url, *extra])


def test_finetune_factor_end_to_end_then_a_rerun_trains_and_extracts_nothing(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(tmp_path)
    dry = _sweep(store_url, spec, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"finetune tiny-ft: {NET} on tiny (train all, freeze -): train 2 epoch(s)" in dry.output
    assert "keeps tiny-ft@epoch1, tiny-ft@epoch2" in dry.output
    assert f"finetune tiny-frozen: {NET} on tiny (train all, freeze bn1): train 1" in dry.output
    assert "tiny x tiny-ft@epoch2" in dry.output  # its entries are planned from the parent
    assert nets.list_networks(open_store(store_url, mode="r")) == []  # a dry run trains nothing

    first = _sweep(store_url, spec, "--json")
    assert first.exit_code == 0, first.output
    out = json.loads(first.output)
    assert out["failed"] == []
    assert out["trained_runs"] == 2
    timings = out["timings"]  # training is timed apart from the extraction
    assert timings["finetune_s"] > 0
    assert timings["total_s"] >= timings["finetune_s"] + timings["extract_s"] - 0.02
    assert {(f["network"], f["trained"]) for f in out["finetune"]} == {
        ("tiny-ft", True),
        ("tiny-frozen", True),
    }
    nets_done = {r["setting"]["network"] for r in out["results"]}
    assert nets_done == {NET, "tiny-ft", "tiny-ft@epoch1", "tiny-ft@epoch2", "tiny-frozen"}
    assert {e["network"] for e in out["extractions"]} == nets_done

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("trained again")

    monkeypatch.setattr(train_mod, "_train", no_training)
    again = _sweep(store_url, spec, "--json")
    assert again.exit_code == 0, again.output
    second = json.loads(again.output)
    assert second["trained_runs"] == 0
    assert [f["trained"] for f in second["finetune"]] == [
        False,
        False,
    ]
    assert second["extractions"] == []
    assert second["forward_batches"] == 0
    text = _sweep(store_url, spec, "--no-report")
    assert "fine-tuning: 2 run(s), 0 trained" in text.output
    assert "time: fine-tune " in text.output
    assert second["cached_results"] == second["n_cells"] == 5
    metrics = lambda o: {r["setting"]["network"]: r["metrics"] for r in o["results"]}  # noqa: E731
    assert metrics(second) == metrics(out)

    found = _sweep(store_url, spec, "--dry-run")
    assert "train 2 epoch(s)" not in found.output
    assert "finetune tiny-ft: " in found.output
    assert "found (run finished" in found.output

    # the study table: the fine-tuned rows beside their frozen parent, with their provenance
    table = _sweep(store_url, spec)
    assert table.exit_code == 0, table.output
    rows = [ln for ln in table.output.splitlines() if ln.startswith("| S")]
    order = [ln.split(" | ")[1] for ln in rows]
    assert order == [NET, "tiny-ft", "tiny-ft@epoch1", "tiny-ft@epoch2", "tiny-frozen"]
    assert "(baseline)" in rows[0]
    assert "| frozen | all | - |" in rows[0]
    assert "| fine-tuned | bn1 | 1 |" in rows[4]  # how each was trained: columns of the table
    assert "### Fine-tuned networks" in table.output
    prov = [ln for ln in table.output.splitlines() if ln.startswith("| tiny-")]
    assert any(
        ln.startswith(f"| tiny-frozen | {NET} | tiny | all | bn1 | 1 | best |") for ln in prov
    )
    assert any(
        ln.startswith(f"| tiny-ft@epoch1 | {NET} | tiny | all | - | 1 | every |") for ln in prov
    )

    # `featstore report --spec`: the same columns, and "training" a factor of the effects
    report = CliRunner().invoke(cli, ["report", "--spec", spec, "--store", store_url])
    assert report.exit_code == 0, report.output
    lines = report.output.splitlines()
    assert any(ln.startswith("| S") and "| tiny-ft@epoch1 |" in ln and "| fine-tuned | none | 1 |" in ln
               for ln in lines)  # fmt: skip
    ranked = lines[lines.index("### Which factor matters (mean effect over tasks)") :]
    assert any(ln.split(" | ")[1:2] == ["training"] for ln in ranked[:12])

    from featstore.sweep.spec import load_spec
    from featstore.sweep.study import study_records

    records = study_records(open_store(store_url, mode="r"), load_spec(spec))
    by_net = {record_setting(r)["network"]: r for r in records}
    assert by_net["tiny-frozen"]["finetune"]["freeze"] == "bn1"
    assert by_net["tiny-ft@epoch2"]["finetune"]["epoch"] == 2
    assert by_net["tiny-ft"]["finetune"]["parent"] == NET
    assert "finetune" not in by_net[NET]


def test_a_changed_recipe_under_a_used_name_is_refused_before_training(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = SPEC.replace("keep_every: 1}", "keep_every: 0}").replace("  - {name: tiny-frozen", "#")
    assert _sweep(store_url, _spec(tmp_path, small), "--json").exit_code == 0

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("trained")

    monkeypatch.setattr(train_mod, "_train", no_training)
    changed = _spec(tmp_path, small.replace("epochs: 2", "epochs: 3"))
    res = _sweep(store_url, changed)
    assert res.exit_code == 1, res.output
    assert "already has a network named 'tiny-ft'" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("epochs: 2", "epochs: two"),
        ("batch_size: 8", "batch_size: 8, lrr: 0.1"),
        ("batch_size: 8", "batch_size: 8, optimizer: rmsprop"),
        ("batch_size: 8", "batch_size: 8, lr: true"),
        ("name: tiny-ft", "name: a/b"),
        ("name: tiny-ft", f'name: "{NET}"'),
    ],
)
def test_bad_finetune_fields_are_one_line_errors_naming_the_entry(
    store_url: str, tmp_path: Path, change: str, message: str
) -> None:
    text = SPEC.replace(change, message, 1)
    res = _sweep(store_url, _spec(tmp_path, text), "--dry-run")
    assert res.exit_code == 1, res.output
    line = res.output.strip()
    assert "\n" not in line
    assert line.startswith("Error: sweep spec: ")
    assert "finetune[0] (" in line
    assert "Traceback" not in res.output


def test_an_unknown_layer_is_refused_before_any_run_trains(store_url: str, tmp_path: Path) -> None:
    text = SPEC.replace("freeze: bn1", "freeze: conv9")
    res = _sweep(store_url, _spec(tmp_path, text))
    assert res.exit_code == 1, res.output
    assert "finetune tiny-frozen on dataset 'tiny'" in res.output
    assert "conv9" in res.output
    assert nets.list_networks(open_store(store_url, mode="r")) == []  # tiny-ft not trained
    text = SPEC.replace("layers: [flat], epochs: 2", "layers: [nolayer], epochs: 2")
    res = _sweep(store_url, _spec(tmp_path, text))
    assert res.exit_code == 1
    assert "nolayer" in res.output


def test_several_datasets_name_one_network_per_dataset() -> None:
    raw = {
        "datasets": ["a", "b"],
        "networks": [{"name": NET, "layers": ["flat"]}],
        "finetune": [{"name": "ft", "network": NET, "layers": ["flat"], "epochs": 1}],
        "baseline": {"network": NET},
    }
    spec = parse_spec(raw)
    assert [n.name for n in spec.networks_for("a")] == [NET, "ft-a"]
    assert {c.setting.network for c in spec.cells() if c.dataset == "b"} == {NET, "ft-b"}
    assert spec.orders()["network"] == [NET, "ft-a", "ft-b"]
    with pytest.raises(SpecError, match=r"finetune\[0\] \(ft\)\.epochs must be an integer"):
        parse_spec({**raw, "finetune": [{**raw["finetune"][0], "epochs": 1.5}]})
    with pytest.raises(SpecError, match="names another network"):
        parse_spec({**raw, "networks": [*raw["networks"], {"name": "ft", "layers": ["flat"]}]})
