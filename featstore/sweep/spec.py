"""Sweep specifications: a YAML grid of factors over datasets and tasks, validated up front.

A spec names the datasets (each with its tasks), and the factor lists whose product is the
grid: networks x layers x pooling x views x transforms x classifiers. One setting of those
factors is the *baseline* the report measures relative error reduction against::

    name: flowers-factors
    datasets:
      - {name: flowers, source: /data/flowers12, tasks: [classify, transferability]}
    networks:
      - name: efficientnet_lite0
        layers: [blocks.10, blocks.14, head]
    pooling: [avg, max]
    views: [plain]
    transforms: ["l2", "pca=64,l2"]
    classifiers: [svm]
    estimators: [logme, h_score, gbc]
    baseline: {layer: head, pooling: avg, transform: l2}

Every problem raises :class:`~featstore.errors.SpecError` naming the field that is wrong.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from featstore.errors import DatasetError, FeatstoreError, SpecError, clip, shown
from featstore.evaluate.tasks import CLASSIFIER_OPTIONS, reading_options
from featstore.evaluate.tasks import TASKS as TASK_REGISTRY
from featstore.keys import canonical_json
from featstore.settings import setting_label
from featstore.specs import DEFAULT_POOLING, DEFAULT_VIEW, parse_pooling

__all__ = [
    "TASKS",
    "Cell",
    "DatasetSpec",
    "FinetuneSpec",
    "NetworkSpec",
    "Setting",
    "SweepSpec",
    "load_spec",
    "parse_spec",
]

# the task registry's vocabulary (one list): tasks, classifiers and the options each reads
TASKS = tuple(TASK_REGISTRY)
CLASSIFIERS = tuple(CLASSIFIER_OPTIONS)
# options the grid itself sets per cell (or its own fields do): never given under 'options'
GRID_OPTIONS = {"transform", "classifier", "seed", "estimators", "labels"}
ESTIMATORS = ("logme", "h_score", "gbc")
VIEWS_PLAIN = ("plain", "flip", "flipavg")
TOP_LEVEL = {
    "name",
    "description",
    "datasets",
    "networks",
    "layers",
    "pooling",
    "views",
    "transforms",
    "classifiers",
    "estimators",
    "baseline",
    "seed",
    "extract",
    "similarity",
    "options",
    "finetune",
}
# similarity: {measure: cka|rbf_cka|rsa, split: all|NAME, debiased, sigma, distance, compare}
SIMILARITY_FIELDS = {"measure", "split", "debiased", "sigma", "distance", "compare"}
DATASET_FIELDS = {"name", "source", "task", "tasks", "subset"}
NETWORK_FIELDS = {"name", "layers", "weights", "imagenet_top1"}
BASELINE_FIELDS = {"network", "layer", "pooling", "view", "transform", "classifier"}
EXTRACT_FIELDS = {"batch_size", "device", "compute_dtype", "dtype", "workers"}


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset of the sweep: registered name, optional source to register it from, tasks."""

    name: str
    tasks: tuple[str, ...]
    source: str | None = None
    subset: int | None = None  # keep this many images (stratified, seeded) as a smaller dataset


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    layers: tuple[str, ...]
    weights: str | None = None
    imagenet_top1: float | None = None  # % (the report's architecture-vs-transfer axis)
    finetuned: FinetuneSpec | None = None  # a network the sweep fine-tunes (see `finetune:`)


@dataclass(frozen=True)
class FinetuneSpec:
    """A ``finetune:`` entry: ``network`` fine-tuned on each dataset of the sweep by
    ``recipe`` (the fields of :class:`featstore.finetune.Recipe`), then extracted at
    ``layers`` like any network. Stored as ``name`` when the sweep has one dataset, as
    ``name-<dataset>`` on each of several."""

    name: str
    network: str
    layers: tuple[str, ...]
    recipe: dict[str, Any]
    weights: str | None = None

    def stored_name(self, dataset: str, n_datasets: int) -> str:
        return self.name if n_datasets == 1 else f"{self.name}-{dataset}"

    @property
    def kept_epochs(self) -> tuple[int, ...]:
        """Epochs kept beside the best (``keep_every: K``): each is a network NAME@epochK."""
        every, epochs = int(self.recipe.get("keep_every") or 0), int(self.recipe["epochs"])
        return tuple(range(every, epochs + 1, every)) if every else ()


@dataclass(frozen=True)
class Setting:
    """One row of the report: every factor except the dataset and task."""

    network: str
    layer: str
    pooling: str
    view: str
    transform: str
    classifier: str

    def as_dict(self) -> dict[str, str]:
        return {
            "network": self.network,
            "layer": self.layer,
            "pooling": self.pooling,
            "view": self.view,
            "transform": self.transform,
            "classifier": self.classifier,
        }

    @property
    def label(self) -> str:
        return setting_label(self.as_dict())


@dataclass(frozen=True)
class Cell:
    """One evaluation of the sweep: a setting on a dataset for one task."""

    dataset: str
    task: str
    setting: Setting

    @property
    def label(self) -> str:
        return f"{self.dataset}:{self.task}:{self.setting.label}"


@dataclass(frozen=True)
class SweepSpec:
    name: str
    datasets: tuple[DatasetSpec, ...]
    networks: tuple[NetworkSpec, ...]
    pooling: tuple[str, ...]
    views: tuple[str, ...]
    transforms: tuple[str, ...]
    classifiers: tuple[str, ...]
    estimators: tuple[str, ...]
    baseline: dict[str, str]
    seed: int = 0
    extract: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    similarity: dict[str, Any] = field(default_factory=dict)  # options of the similarity task
    # options per task or classifier name: {"classify": {"shots": [1, 5]}, "svm": {"c_grid": ...}}
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cell_options(self, task: str, classifier: str | None = None) -> dict[str, Any]:
        """The options a cell of ``task`` (with ``classifier``) is given from ``options``."""
        out = dict(self.options.get(task, {}))
        if task == "classify" and classifier is not None:
            out.update(self.options.get(classifier, {}))
        return out

    finetune: tuple[FinetuneSpec, ...] = ()  # networks fine-tuned on each dataset first

    def networks_for(self, dataset: str) -> tuple[NetworkSpec, ...]:
        """The networks of ``dataset``'s cells: ``networks`` and the ones fine-tuned on it."""
        n = len(self.datasets)
        tuned = tuple(
            NetworkSpec(name, f.layers, finetuned=f)
            for f in self.finetune
            for base in [f.stored_name(dataset, n)]
            for name in [base, *(f"{base}@epoch{e}" for e in f.kept_epochs)]
        )
        return self.networks + tuned

    def settings(self, task: str, dataset: str | None = None) -> list[Setting]:
        """The grid of settings evaluated for ``task`` (classifier '-' outside classify);
        with ``dataset``, the networks fine-tuned on it are in the grid too."""
        classifiers = self.classifiers if task == "classify" else ("-",)
        views = self.views
        if task == "retrieve":
            views = tuple(v for v in views if v != "flipavg") or views
        out = []
        for net in self.networks if dataset is None else self.networks_for(dataset):
            for layer, pool, view, tr, clf in itertools.product(
                net.layers, self.pooling, views, self.transforms, classifiers
            ):
                out.append(Setting(net.name, layer, pool, view, tr, clf))
        return out

    def cells(self) -> list[Cell]:
        return [
            Cell(ds.name, task, setting)
            for ds in self.datasets
            for task in ds.tasks
            for setting in self.settings(task, ds.name)
        ]

    def orders(self) -> dict[str, list[str]]:
        """Display order of each factor's values (layers in network order), for reports."""
        nets = self.networks + tuple(n for d in self.datasets for n in self.networks_for(d.name))
        names = [n.name for n in self.networks]
        last: dict[str, str] = {}  # a fine-tuned network's row right after its parent's
        for net in nets[len(self.networks) :]:
            parent = net.finetuned.network if net.finetuned else ""
            anchor = last.get(parent, parent)
            names.insert(names.index(anchor) + 1 if anchor in names else len(names), net.name)
            last[parent] = net.name
        return {
            "network": list(dict.fromkeys(names)),
            "layer": list(dict.fromkeys(la for n in nets for la in n.layers)),
            "pooling": list(self.pooling),
            "view": list(self.views),
            "transform": list(self.transforms),
            "classifier": list(self.classifiers),
        }

    def imagenet_top1(self) -> dict[str, float]:
        """The ImageNet top-1 (%) the spec gives its networks (overriding published values)."""
        return {n.name: n.imagenet_top1 for n in self.networks if n.imagenet_top1 is not None}

    def baseline_matches(self, factors: Mapping[str, Any]) -> bool:
        """Whether a setting (dict of factor -> value) is the named baseline."""
        return all(str(factors.get(k)) == str(v) for k, v in self.baseline.items())


# --------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------


MAX_SPEC_BYTES = 1 << 20  # a sweep spec is a page of YAML; a bigger file is not one
MAX_NAME_CHARS = 200


# PyYAML ships no types (and types-PyYAML is not a dependency), so SafeLoader is Any here.
class _SpecLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML's safe loader without aliases: ``*anchor`` would let a few hundred bytes expand
    into gigabytes (the "billion laughs"), and a spec never needs one."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise SpecError(
                f"sweep spec: line {event.start_mark.line + 1} uses the YAML alias "
                f"*{clip(str(event.anchor), 40)}; aliases are refused (they can expand a small "
                "file into gigabytes): write the values out"
            )
        return super().compose_node(parent, index)


def _read_yaml(p: Path) -> Any:
    if p.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(
            f"sweep spec {str(p)!r} is {p.stat().st_size} bytes; a spec is at most "
            f"{MAX_SPEC_BYTES} bytes of YAML"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"sweep spec {str(p)!r} is not UTF-8 text ({exc.reason})") from None
    try:
        return yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError(f"sweep spec {str(p)!r} is not valid YAML: {clip(str(exc), 400)}") from None
    except RecursionError:
        raise SpecError(f"sweep spec {str(p)!r} nests its values too deeply to be a spec") from None


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate the YAML sweep spec at ``path`` (aliases refused, size bounded)."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"sweep spec {str(p)!r} does not exist or is not a file")
    raw = _read_yaml(p)
    spec = parse_spec(raw, base_dir=p.parent)
    return SweepSpec(**{**spec.__dict__, "path": str(p.resolve())})


def _list(raw: Mapping[str, Any], name: str, default: Any = None) -> list[Any]:
    value = raw.get(name, default)
    if value is None:
        raise SpecError(f"sweep spec: field '{name}' is required")
    if isinstance(value, (str, int, float)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise SpecError(f"sweep spec: field '{name}' must be a non-empty list, got {shown(value)}")
    return value


def _str_items(values: list[Any], name: str) -> tuple[str, ...]:
    out = []
    for i, v in enumerate(values):
        if v is None or isinstance(v, (dict, list)):
            raise SpecError(f"sweep spec: {name}[{i}] must be a string, got {shown(v)}")
        out.append(str(v))
    if len(set(out)) != len(out):
        dupes = sorted({v for v in out if out.count(v) > 1})
        raise SpecError(f"sweep spec: field '{name}' lists {clip(str(dupes))} more than once")
    return tuple(out)


def _unknown(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(shown(k) for k in raw if k not in allowed)
    if extra:
        raise SpecError(
            f"sweep spec: unknown field(s) [{clip(', '.join(extra))}] in {where}; "
            f"allowed: {sorted(allowed)}"
        )


def _resolve_scheme_path(source: str, base_dir: Path) -> str:
    """``SCHEME:relative/dir[?opts]`` with the path made absolute against the spec's folder."""
    from featstore.datasets.registry import parse_source

    try:
        parsed = parse_source(source)
    except DatasetError:
        return source  # a malformed scheme source fails with its own message when registered
    if parsed is None or Path(parsed.path).expanduser().is_absolute():
        return source
    candidate = (base_dir / parsed.path).expanduser()
    if not candidate.exists():
        return source
    _, _, query = source.partition("?")
    return f"{parsed.scheme.name}:{candidate.resolve()}" + (f"?{query}" if query else "")


def _dataset(raw: Any, i: int, base_dir: Path | None) -> DatasetSpec:
    where = f"datasets[{i}]"
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise SpecError(f"sweep spec: {where} must be a name or a mapping, got {shown(raw)}")
    _unknown(raw, DATASET_FIELDS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(f"sweep spec: {where}.name is required (the registered dataset name)")
    if "task" in raw and "tasks" in raw:
        raise SpecError(f"sweep spec: {where} gives both 'task' and 'tasks'; use one")
    tasks = _str_items(
        _list(raw, "tasks" if "tasks" in raw else "task", "classify"), f"{where}.tasks"
    )
    for t in tasks:
        if t not in TASKS:
            raise SpecError(
                f"sweep spec: {where}.tasks: unknown task {shown(t)}; choose from {list(TASKS)}"
            )
    source = raw.get("source")
    if source is not None and not isinstance(source, str):
        raise SpecError(f"sweep spec: {where}.source must be a path or URL, got {shown(source)}")
    if (
        source is not None
        and not source.startswith("builtin:")
        and "://" not in source
        and base_dir is not None
    ):
        candidate = (base_dir / source).expanduser()
        if not Path(source).expanduser().is_absolute() and candidate.exists():
            source = str(candidate.resolve())
        source = _resolve_scheme_path(source, base_dir)  # voc2007:VOCdevkit/VOC2007
    subset = raw.get("subset")
    if subset is not None and (
        isinstance(subset, bool) or not isinstance(subset, int) or subset < 2
    ):
        raise SpecError(f"sweep spec: {where}.subset must be an integer >= 2, got {shown(subset)}")
    return DatasetSpec(name=name, tasks=tasks, source=source, subset=subset)


def _networks(raw: Mapping[str, Any]) -> tuple[NetworkSpec, ...]:
    nets = _list(raw, "networks")
    shared = raw.get("layers")
    out = []
    for i, item in enumerate(nets):
        where = f"networks[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping):
            raise SpecError(f"sweep spec: {where} must be a name or a mapping, got {shown(item)}")
        _unknown(item, NETWORK_FIELDS, where)
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise SpecError(f"sweep spec: {where}.name is required")
        if "layers" in item:
            layers = _str_items(_list(item, "layers"), f"{where}.layers")
        elif shared is not None:
            layers = _str_items(_list(raw, "layers"), "layers")
        else:
            raise SpecError(
                f"sweep spec: {where} ({name}) has no layers: give '{where}.layers' or a "
                "top-level 'layers' list (see `featstore models layers NAME`)"
            )
        weights = item.get("weights")
        if weights is not None and not isinstance(weights, str):
            raise SpecError(
                f"sweep spec: {where}.weights must be a file path, got {shown(weights)}"
            )
        top1 = item.get("imagenet_top1")
        if top1 is not None and (
            isinstance(top1, bool) or not isinstance(top1, (int, float)) or not 1 < top1 < 100
        ):
            raise SpecError(
                f"sweep spec: {where}.imagenet_top1 must be the ImageNet top-1 accuracy in % "
                f"(between 1 and 100, e.g. 75.1; not a fraction), got {shown(top1)}"
            )
        out.append(
            NetworkSpec(
                name,
                layers,
                None if weights is None else str(weights),
                None if top1 is None else float(top1),
            )
        )
    names = [n.name for n in out]
    if len(set(names)) != len(names):
        raise SpecError(f"sweep spec: field 'networks' lists a network twice: {clip(str(names))}")
    return tuple(out)


def _check_pooling(values: tuple[str, ...]) -> tuple[str, ...]:
    """The canonical text of each stored pooling (``gem`` -> ``gem:3``); SpecError if unknown."""
    out = []
    for v in values:
        try:
            out.append(str(parse_pooling(v)))
        except SpecError as exc:
            raise SpecError(
                f"sweep spec: pooling {shown(v)} is not a stored pooling ({clip(str(exc))})"
            ) from None
    return tuple(dict.fromkeys(out))


def _check_views(values: tuple[str, ...]) -> None:
    for v in values:
        if v not in VIEWS_PLAIN and not v.startswith("crops:"):
            raise SpecError(
                f"sweep spec: view {shown(v)} is unknown; use plain, flip, flipavg (mean of plain and "
                "flip) or crops:<scales>"
            )


def _check_transforms(values: tuple[str, ...]) -> tuple[str, ...]:
    from featstore.evaluate.features.transform_spec import canonical_spec

    out = []
    for i, v in enumerate(values):
        text = "" if v in ("", "none", "-") else v
        try:
            out.append(canonical_spec(text) or "none")
        except SpecError as exc:
            raise SpecError(f"sweep spec: transforms[{i}] {shown(v)}: {clip(str(exc))}") from None
    return tuple(out)


def _baseline(raw: Any, spec: SweepSpec) -> dict[str, str]:
    if raw is None:
        raise SpecError(
            "sweep spec: field 'baseline' is required: name the setting the report compares "
            "against, e.g. baseline: {layer: head, pooling: avg, transform: l2}"
        )
    if not isinstance(raw, Mapping) or not raw:
        raise SpecError(
            f"sweep spec: field 'baseline' must be a mapping of factor: value, got {shown(raw)}"
        )
    _unknown(raw, BASELINE_FIELDS, "baseline")
    for k, v in raw.items():
        if v is None or isinstance(v, (Mapping, list)):
            raise SpecError(f"sweep spec: baseline.{k} must be one value, got {shown(v)}")
    out = {str(k): str(v) for k, v in raw.items()}
    if "transform" in out:
        out["transform"] = _check_transforms((out["transform"],))[0]
    allowed = {
        "network": spec.orders()["network"],
        "layer": sorted(set(spec.orders()["layer"])),
        "pooling": list(spec.pooling),
        "view": list(spec.views),
        "transform": list(spec.transforms),
        "classifier": list(spec.classifiers),
    }
    for k, v in out.items():
        if v not in allowed[k]:
            raise SpecError(
                f"sweep spec: baseline.{k} = {shown(v)} is not one of the sweep's values "
                f"{clip(str(allowed[k]))}"
            )
    return out


def _similarity(raw: Any) -> dict[str, Any]:
    """Options of the similarity task, checked by its own measure validation."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(
            f"sweep spec: field 'similarity' must be a mapping such as {{measure: cka, split: test}}, "
            f"got {shown(raw)}"
        )
    _unknown(raw, SIMILARITY_FIELDS, "similarity")
    from featstore.evaluate.similarity.task import measure_spec

    opts = dict(raw)
    try:
        measure_spec(
            str(opts.get("measure", "cka")),
            **{k: opts[k] for k in ("debiased", "sigma", "distance", "compare") if k in opts},
        )
    except FeatstoreError as exc:
        raise SpecError(f"sweep spec: similarity: {clip(str(exc))}") from None
    return opts


def _options(
    raw: Any, datasets: tuple[DatasetSpec, ...], classifiers: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """``options``: per task (or classifier) name, the options its cells are given.

    Each option must be one the registry says that task takes; one that a cell of the sweep
    would be given but does not read (``c_grid`` under ``classify`` with a kNN cell) is
    refused with that cell named, as ``featstore evaluate`` refuses it.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(
            "sweep spec: field 'options' must map a task or classifier to its options, e.g. "
            f"{{svm: {{c_grid: [0.1, 1, 10]}}, classify: {{shots: [1, 5]}}}}, got {shown(raw)}"
        )
    tasks = list(dict.fromkeys(t for d in datasets for t in d.tasks))
    out: dict[str, dict[str, Any]] = {}
    for name, opts in raw.items():
        where = f"options.{name}"
        chosen: list[str | None]
        if name in CLASSIFIERS:
            task, chosen = "classify", [str(name)]
            if name not in classifiers:
                raise SpecError(
                    f"sweep spec: {where}: no cell uses classifier {name!r} (classifiers: "
                    f"{list(classifiers)}); add it to 'classifiers' or drop these options"
                )
        elif name in TASKS:
            task = str(name)
            chosen = list(classifiers) if name == "classify" else [None]
            if name == "similarity":
                raise SpecError(f"sweep spec: {where}: give similarity options in 'similarity'")
        else:
            raise SpecError(
                f"sweep spec: {where}: {shown(name)} is neither a task {list(TASKS)} nor a "
                f"classifier {list(CLASSIFIERS)}"
            )
        if task not in tasks:
            raise SpecError(
                f"sweep spec: {where}: no dataset of the sweep has task {task!r}; add it to a "
                "dataset's tasks or drop these options"
            )
        if not isinstance(opts, Mapping) or not opts:
            raise SpecError(
                f"sweep spec: {where} must be a mapping of option: value, got {shown(opts)}"
            )
        takes = [o for o in get_options(task) if o not in GRID_OPTIONS]
        for key in opts:
            if key not in takes:
                raise SpecError(
                    f"sweep spec: {where}.{key}: task {task!r} takes no option {shown(key)}; its "
                    f"options are {takes}"
                )
            for clf in chosen:
                if key not in reading_options(task, clf):
                    cell = next(d.name for d in datasets if task in d.tasks)
                    raise SpecError(
                        f"sweep spec: {where}.{key} does not apply to cell {cell}:{task} with "
                        f"classifier {clf}: only {[c for c, o in CLASSIFIER_OPTIONS.items() if key in o]} "
                        f"read it; move it under options.<classifier> or drop it"
                    )
        out[str(name)] = {str(k): v for k, v in opts.items()}
    return out


def get_options(task: str) -> tuple[str, ...]:
    return TASK_REGISTRY[task].options


FINETUNE_FIELDS = {"name", "network", "layers", "weights"}  # and the recipe's fields


def _finetune(
    raw: Mapping[str, Any], datasets: tuple[DatasetSpec, ...], networks: tuple[NetworkSpec, ...]
) -> tuple[FinetuneSpec, ...]:
    """The ``finetune:`` entries: each a parent network, its layers and a fine-tuning recipe
    (every field type-checked and the recipe validated here, before anything runs)."""
    items = raw.get("finetune")
    if items is None:
        return ()
    from dataclasses import fields as dc_fields

    from featstore.finetune.recipe import Recipe  # no torch: parsing stays light
    from featstore.store.trained import check_network_name

    if not isinstance(items, list) or not items:
        raise SpecError(
            "sweep spec: field 'finetune' must be a non-empty list of {name, network, layers, "
            f"epochs, freeze, ...}} entries, got {shown(items)}"
        )
    kinds = {f.name: f.type for f in dc_fields(Recipe)}
    allowed = FINETUNE_FIELDS | set(kinds)
    taken = {n.name for n in networks}
    out: list[FinetuneSpec] = []
    for i, item in enumerate(items):
        where = f"finetune[{i}]"
        if not isinstance(item, Mapping):
            raise SpecError(f"sweep spec: {where} must be a mapping, got {shown(item)}")
        name = item.get("name")
        where = f"finetune[{i}] ({clip(str(name), 40)})" if isinstance(name, str) else where
        _unknown(item, allowed, where)
        for key in ("name", "network"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise SpecError(f"sweep spec: {where}.{key} is required (a network name)")
        name = str(item["name"])
        for d in datasets:
            try:
                check_network_name(
                    FinetuneSpec(name, "", (), {}).stored_name(d.name, len(datasets))
                )
            except FeatstoreError as exc:
                raise SpecError(f"sweep spec: {where}.name: {clip(str(exc))}") from None
        if "@" in name:
            raise SpecError(f"sweep spec: {where}.name: '@epochK' names kept epochs; drop it")
        if name in taken:
            raise SpecError(f"sweep spec: {where}.name {shown(name)} names another network")
        taken.add(name)
        if "layers" in item:
            layers = _str_items(_list(item, "layers"), f"{where}.layers")
        elif raw.get("layers") is not None:
            layers = _str_items(_list(raw, "layers"), "layers")
        else:
            raise SpecError(f"sweep spec: {where} has no layers: give '{where}.layers'")
        weights = item.get("weights")
        if weights is not None and not isinstance(weights, str):
            raise SpecError(
                f"sweep spec: {where}.weights must be a file path, got {shown(weights)}"
            )
        given = {k: v for k, v in item.items() if k in kinds and v is not None}
        for key, value in given.items():
            kind = str(kinds[key])
            ok = (
                isinstance(value, str)
                if "str" in kind
                else isinstance(value, int)
                if kind == "int"
                else isinstance(value, (int, float))
            )
            if isinstance(value, bool) or not ok:
                want = (
                    "a string" if "str" in kind else "an integer" if kind == "int" else "a number"
                )
                raise SpecError(f"sweep spec: {where}.{key} must be {want}, got {shown(value)}")
        try:
            recipe = Recipe.from_dict(given)
        except FeatstoreError as exc:
            raise SpecError(f"sweep spec: {where}: {clip(str(exc))}") from None
        out.append(FinetuneSpec(name, str(item["network"]), layers, recipe.to_dict(), weights))
    return tuple(out)


def parse_spec(raw: Any, base_dir: str | Path | None = None) -> SweepSpec:
    """Validate a spec given as a mapping (the parsed YAML)."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"sweep spec must be a mapping of fields, got {type(raw).__name__}")
    _unknown(raw, TOP_LEVEL, "the top level")
    base = Path(base_dir) if base_dir is not None else None
    datasets = tuple(_dataset(d, i, base) for i, d in enumerate(_list(raw, "datasets")))
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise SpecError(f"sweep spec: field 'datasets' lists a dataset twice: {clip(str(names))}")
    networks = _networks(raw)
    finetune = _finetune(raw, datasets, networks)
    pooling = _str_items(_list(raw, "pooling", [str(DEFAULT_POOLING)]), "pooling")
    pooling = _check_pooling(pooling)
    views = _str_items(_list(raw, "views", [str(DEFAULT_VIEW)]), "views")
    _check_views(views)
    transforms = _check_transforms(_str_items(_list(raw, "transforms", ["none"]), "transforms"))
    classifiers = _str_items(_list(raw, "classifiers", ["svm"]), "classifiers")
    for c in classifiers:
        if c not in CLASSIFIERS:
            raise SpecError(
                f"sweep spec: classifiers: unknown classifier {shown(c)}; choose from "
                f"{list(CLASSIFIERS)}"
            )
    estimators = _str_items(_list(raw, "estimators", list(ESTIMATORS)), "estimators")
    for e in estimators:
        if e not in ESTIMATORS:
            raise SpecError(
                f"sweep spec: estimators: {shown(e)} is not a feature-based estimator; choose from "
                f"{list(ESTIMATORS)} (nce and leep need the source network's predictions)"
            )
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise SpecError(
            f"sweep spec: field 'seed' must be an integer from 0 to 2**32-1, got {shown(seed)}"
        )
    extract = raw.get("extract") or {}
    if not isinstance(extract, Mapping):
        raise SpecError(f"sweep spec: field 'extract' must be a mapping, got {shown(extract)}")
    _unknown(extract, EXTRACT_FIELDS, "extract")
    similarity = _similarity(raw.get("similarity"))
    options = _options(raw.get("options"), datasets, classifiers)
    name = raw.get("name") or "sweep"
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
        raise SpecError(
            f"sweep spec: field 'name' must be a string of at most {MAX_NAME_CHARS} characters, "
            f"got {shown(name)}"
        )
    spec = SweepSpec(
        name=name,
        datasets=datasets,
        networks=networks,
        pooling=pooling,
        views=views,
        transforms=transforms,
        classifiers=classifiers,
        estimators=estimators,
        baseline={},
        seed=seed,
        extract=dict(extract),
        similarity=similarity,
        options=options,
        finetune=finetune,
    )
    baseline = _baseline(raw.get("baseline"), spec)
    return SweepSpec(**{**spec.__dict__, "baseline": baseline})


def spec_fingerprint(spec: SweepSpec) -> str:
    """Canonical JSON of the grid (used to tag result records with the sweep that asked)."""
    body = {k: v for k, v in spec.__dict__.items() if k != "path"}
    return canonical_json(body)
