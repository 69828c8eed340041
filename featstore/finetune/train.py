"""Fine-tuning a network on a registered dataset into a network the store knows.

A run is keyed by the parent network's identity and architecture, the dataset (its content
fingerprint: images, labels, splits) and the recipe (seed included). A finished run is a
lookup; an unfinished one resumes from the state saved after its last epoch. Training sees
the train rows and checkpoint selection the validation rows (the val split, or a stratified
share carved from train as evaluation carves it); the test rows are never read.

Each epoch seeds its own generators from (seed, epoch), so a resumed run computes the same
weights as an uninterrupted one (bitwise on CPU in float32).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from featstore.errors import EntryNotFoundError, FinetuneError, ImageChangedError, UnknownModelError
from featstore.finetune.checkpoints import epoch_seed, pack_state, restore_state
from featstore.finetune.layers import direct_tensors, split_at
from featstore.finetune.recipe import Recipe, parse_schedule
from featstore.keys import make_key
from featstore.models import WeightsRef, build_meta, get_spec, load_model, weights_identity
from featstore.models.adapter import TapNet
from featstore.models.derived import Head, check_trainable, classifier_name, replace_head
from featstore.models.loading import resolve_weights
from featstore.models.registry import torch_seeded
from featstore.models.spec import ModelSpec
from featstore.models.weights import state_dict_sha256
from featstore.progress import Progress, report
from featstore.specs import WeightsIdentity
from featstore.store import open_store
from featstore.store import trained as nets

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset
    from featstore.store.base import Store

__all__ = ["Request", "Rows", "finetune", "plan_request", "plan_run", "training_rows"]


@dataclass(frozen=True)
class Rows:
    """Row indices the run reads: train (fit), val (checkpoint selection), test (never read)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    val_source: str  # the split's name, or carved:<fraction>


def training_rows(dataset: Dataset, recipe: Recipe) -> Rows:
    """The train and validation rows of ``dataset``, disjoint from its test rows (checked)."""
    from featstore.evaluate.probes.protocol import carve_validation, labelled_rows, split_rows

    if dataset.multilabel:
        raise FinetuneError(
            f"dataset {dataset.name!r} is multi-label; fine-tuning trains a single-label "
            "classifier head (one class per image)"
        )
    splits = split_rows(dataset)
    y = np.asarray(dataset.labels)
    train, val = labelled_rows(y, splits.train), labelled_rows(y, splits.val)
    source = splits.val_name or f"carved:{recipe.val_fraction:g}"
    if len(val) == 0:
        train, val = carve_validation(
            y,
            train,
            recipe.val_fraction,
            recipe.seed,
            chooses="fine-tuning picks its best epoch",
            remedy="lower --val-fraction",
        )
    rows = Rows(np.sort(train), np.sort(val), np.asarray(splits.test), source)
    seen = np.intersect1d(np.concatenate([rows.train, rows.val]), rows.test)
    if seen.size:  # an invariant of split_rows; checked because honest numbers depend on it
        raise FinetuneError(f"{seen.size} test rows were chosen for training; this is a bug")
    return rows


# --- planning: what the run is, before any weights are loaded ------------------------------
@dataclass(frozen=True)
class RunPlan:
    """The parent network, where it came from, the new head and the run's key."""

    spec: ModelSpec  # the parent as loaded (a stored parent: its derived spec)
    weights: WeightsRef
    identity: WeightsIdentity
    architecture: str  # the registered network whose architecture everything shares
    head: Head
    recipe: Recipe
    key: str


def _parent(store: Store, model: str, weights: Any) -> tuple[ModelSpec, WeightsRef, str]:
    found = nets.stored_network(store, model)
    if found is not None:
        if weights is not None:
            raise FinetuneError(
                f"{model} is a network of the store with its own weights; drop --weights"
            )
        return found.spec, found.weights, found.record.parent
    spec = get_spec(model)
    check_trainable(spec)
    return spec, resolve_weights(spec, weights), spec.name


def plan_run(
    store: Store, dataset: Dataset, model: str, recipe: Recipe, weights: Any = None
) -> RunPlan:
    """The run a request means and its key (no weights loaded when their hash is cached)."""
    spec, ref, architecture = _parent(store, model, weights)
    identity = weights_identity(spec, ref)
    head_name, linear = classifier_name(build_meta(spec), spec.name)
    head = Head(head_name, int(linear.in_features), len(dataset.classes))
    key = make_key(
        "ft",
        {
            "parent": identity.to_dict(),
            "architecture": architecture,
            "head": head.to_dict(),
            "preprocess": spec.preprocess.to_dict(),
            "dataset": {"fingerprint": dataset.fingerprint, "images": dataset.images_id},
            "recipe": recipe.to_dict(),
        },
    )
    return RunPlan(spec, ref, identity, architecture, head, recipe, key)


# --- the trainable network -----------------------------------------------------------------
def _prepare(plan: RunPlan, device: str) -> tuple[nn.Module, list[str]]:
    """The parent with its new head, frozen and re-initialised as the recipe says; returns
    the module and the names of frozen modules (kept in eval mode while training)."""
    recipe = plan.recipe
    loaded = load_model(plan.spec, plan.weights)
    if loaded.identity != plan.identity:
        raise FinetuneError(
            f"the weights of {plan.spec.name} changed since the run was keyed (a team network "
            "whose function builds new random weights on every call?); make them deterministic"
        )
    module = loaded.module
    lib = library_model(module)  # head and layer names are the library model's (timm)
    with torch_seeded(epoch_seed(recipe.seed, 0, "head")):
        replace_head(lib, plan.head)
    names = [n for n, _ in lib.named_modules() if n]
    frozen: list[str] = []
    if recipe.reinit_above:
        _, above = split_at(plan.spec, lib, recipe.reinit_above)
        _reinitialise(lib, above, epoch_seed(recipe.seed, 0, "reinit"), plan.spec.name)
    if recipe.train == "head":
        frozen = [
            n for n in names if n != plan.head.module and not n.startswith(plan.head.module + ".")
        ]
    elif recipe.freeze:
        frozen, _ = split_at(plan.spec, lib, recipe.freeze)
    module.requires_grad_(True)
    for tensor in direct_tensors(lib, frozen).values():
        if isinstance(tensor, nn.Parameter):
            tensor.requires_grad_(False)
    if frozen:  # parameters of the root itself (a ViT's class token and position embedding)
        for param in lib.parameters(recurse=False):  # are the input's: frozen with the first
            param.requires_grad_(False)
    prefix = "model." if lib is not module else ""
    return module.to(device), [prefix + n for n in frozen]


def library_model(module: nn.Module) -> nn.Module:
    """The module whose state dict is the network's weights: a source's library model inside
    its tap wrapper (timm), else the module itself."""
    return module.model if isinstance(module, TapNet) else module


def _reinitialise(module: nn.Module, names: list[str], seed: int, net: str) -> None:
    """Fresh random weights (each module's own ``reset_parameters``, seeded) for ``names``."""
    mods = dict(module.named_modules())
    with torch_seeded(seed):
        for name in names:
            sub = mods[name]
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
            elif any(True for _ in sub.parameters(recurse=False)):
                raise FinetuneError(
                    f"module {name!r} of {net} ({type(sub).__name__}) has parameters but no "
                    "reset_parameters(); it cannot be re-initialised: pick a later --reinit-above"
                )


def _train_mode(module: nn.Module, frozen: list[str]) -> None:
    """Train mode, except frozen modules: their batch-norm statistics stay as loaded."""
    module.train()
    mods = dict(module.named_modules())
    for name in frozen:
        mods[name].training = False


def _optimizer(params: list[nn.Parameter], recipe: Recipe) -> torch.optim.Optimizer:
    if not params:
        raise FinetuneError("the recipe freezes every parameter; nothing would be trained")
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
    cls = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def epoch_lr(recipe: Recipe, epoch: int) -> float:
    """Learning rate of 1-based ``epoch`` under the recipe's schedule."""
    kind, step, gamma = parse_schedule(recipe.schedule)
    if kind == "cosine":
        return recipe.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / recipe.epochs))
    if kind == "step":
        return recipe.lr * gamma ** ((epoch - 1) // step)
    return recipe.lr


# --- images ----------------------------------------------------------------------------------
def _batches(
    dataset: Dataset, rows: np.ndarray, spec: ModelSpec, batch_size: int, workers: int
) -> Iterator[torch.Tensor]:
    """uint8 (B, 3, H, W) batches of ``rows`` in the order given; a changed image is refused."""
    from featstore.extract.loader import RowImages, batches

    data = RowImages(dataset, rows, [spec.preprocess], [])
    for batch in batches(data, batch_size, workers):
        if bool(batch["changed"].any()):
            row = int(batch["row"][batch["changed"]][0])
            raise ImageChangedError(
                f"image {dataset.refs[row]} of dataset {dataset.name!r} changed since it was "
                "registered; register the dataset again"
            )
        yield batch["g0"]


def _augment(x: torch.Tensor, how: str, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips (and padded random crops) of a uint8 batch, from ``gen``."""
    if how == "none":
        return x
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if how == "flip+crop":
        h, w = x.shape[-2:]
        pad = max(1, min(h, w) // 8)
        padded = nn.functional.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(x.dtype)
        offsets = torch.randint(0, 2 * pad + 1, (len(x), 2), generator=gen)
        x = torch.stack(
            [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())]
        )
    return x


def _normalise(x: torch.Tensor, spec: ModelSpec, device: str) -> torch.Tensor:
    pre = spec.preprocess
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)
    return (x.to(device).float() * float(pre.scale) - mean) / std


def _accuracy(
    module: nn.Module, dataset: Dataset, rows: np.ndarray, spec: ModelSpec, recipe: Recipe,
    compute: Any, workers: int,
) -> float:  # fmt: skip
    module.eval()
    y = torch.as_tensor(np.asarray(dataset.labels)[rows], dtype=torch.int64)
    correct, start = 0, 0
    with torch.no_grad():
        for x in _batches(dataset, rows, spec, recipe.batch_size, workers):
            with compute.autocast():
                logits = module(_normalise(x, spec, compute.device))
            pred = logits.float().argmax(1).cpu()
            correct += int((pred == y[start : start + len(x)]).sum())
            start += len(x)
    return correct / max(1, len(rows))


# --- the run ----------------------------------------------------------------------------------
def finetune(
    store: Store,
    dataset: str | Dataset,
    model: str,
    name: str,
    recipe: Recipe | None = None,
    *,
    weights: Any = None,
    device: str = "auto",
    num_workers: int = 0,
    progress: Progress | None = None,
    **recipe_options: Any,
) -> dict[str, Any]:
    """Fine-tune ``model`` on ``dataset``'s train split and register the result as ``name``.

    ``recipe`` (or recipe fields as keywords: epochs, lr, freeze ...) says how. The best
    epoch on validation is stored as ``name``; with ``keep_every=K`` every Kth epoch also as
    ``name@epochK``. ``progress(epoch, epochs, info)`` follows each epoch (train_loss,
    val_accuracy). Returns the run: its key, whether it trained, the names and the curve.
    """
    store = open_store(store)
    recipe = (recipe or Recipe()).with_options(**recipe_options)
    req = plan_request(store, dataset, model, name, recipe, weights=weights, device=device)
    if req.status == "done":
        done = nets.get_run(store, req.plan.key) or {}
        return _register_finished(store, req.plan, done, name, trained=False)
    return _train(store, req.dataset, req.plan, req.rows, name, req.compute, num_workers, progress)


@dataclass(frozen=True)
class Request:
    """A fine-tuning request, planned and checked, nothing trained: the run and its rows, the
    device, and what the store holds of it (``done``: a lookup; ``resume``; ``train``)."""

    plan: RunPlan
    rows: Rows
    compute: Any
    dataset: Dataset
    status: str
    saved_epoch: int | None = None


def plan_request(
    store: Store,
    dataset: str | Dataset,
    model: str,
    name: str,
    recipe: Recipe,
    *,
    weights: Any = None,
    device: str = "auto",
) -> Request:
    """Everything :func:`finetune` checks before it trains (the name free in both of the
    store's registries, the recipe's layers in the parent, the rows), and the run's state."""
    from featstore.extract.device import resolve_compute
    from featstore.models import resolve_layer

    store = open_store(store)
    if isinstance(dataset, str):
        dataset = store.get_dataset(dataset)
    _check_new_name(store, name)
    compute = resolve_compute(
        device, None, None if recipe.compute_dtype == "auto" else recipe.compute_dtype
    )
    recipe = recipe.with_options(compute_dtype=compute.compute_dtype)
    rows = training_rows(dataset, recipe)
    plan = plan_run(store, dataset, model, recipe, weights)
    for layer in (recipe.freeze, recipe.reinit_above):
        if layer:
            resolve_layer(plan.spec, layer)  # an unknown layer is refused before training
    _check_name_free(store, name, plan.key)
    if nets.get_run(store, plan.key) is not None:
        return Request(plan, rows, compute, dataset, "done")
    saved = nets.run_state_epoch(store, plan.key)
    return Request(plan, rows, compute, dataset, "train" if saved is None else "resume", saved)


def _check_new_name(store: Store, name: str) -> None:
    from featstore.store.networks import check_name_free

    nets.check_network_name(name)
    if "@" in name:
        raise FinetuneError(f"{name!r}: '@epochK' is added to kept checkpoints; give a plain name")
    check_name_free(store, name, "fine-tuned")  # a name `models add` holds is refused
    try:
        get_spec(name)
    except UnknownModelError:
        return
    raise FinetuneError(f"{name!r} is a registered network; give the fine-tuned one another name")


def _check_name_free(store: Store, name: str, run_key: str) -> None:
    """Refuse, before any training, a name the store gives to another run's network."""
    try:
        have = nets.get_network(store, name)
    except EntryNotFoundError:
        return
    if have.provenance.get("run") != run_key:
        raise FinetuneError(
            f"store {store.location} already has a network named {name!r} (made by "
            f"{have.provenance.get('run', 'another run')}); choose another name"
        )


def _train(
    store: Store, dataset: Dataset, plan: RunPlan, rows: Rows, name: str, compute: Any,
    workers: int, progress: Progress | None,
) -> dict[str, Any]:  # fmt: skip
    recipe, dev = plan.recipe, compute.device
    module, frozen = _prepare(plan, dev)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = _optimizer(params, recipe)
    use_scaler = compute.compute_dtype == "float16-amp"
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    state: dict[str, Any] = {"curve": [], "best": None, "kept": []}
    start, resumed = 1, None
    saved = nets.get_run_state(store, plan.key)
    if saved is not None:
        meta, tensors = saved
        restore_state(module, optimizer, tensors, meta, scaler)
        state = {k: meta[k] for k in ("curve", "best", "kept")}
        start = resumed = int(meta["epoch"]) + 1
    y = torch.as_tensor(np.asarray(dataset.labels), dtype=torch.int64)
    started = time.perf_counter()
    for epoch in range(start, recipe.epochs + 1):
        lr = epoch_lr(recipe, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        shuffle = torch.Generator().manual_seed(epoch_seed(recipe.seed, epoch, "shuffle"))
        augment = torch.Generator().manual_seed(epoch_seed(recipe.seed, epoch, "augment"))
        order = rows.train[torch.randperm(len(rows.train), generator=shuffle).numpy()]
        _train_mode(module, frozen)
        total, seen, start_row = 0.0, 0, 0
        with _seeded(epoch_seed(recipe.seed, epoch, "torch"), dev):
            for x in _batches(dataset, order, plan.spec, recipe.batch_size, workers):
                target = y[order[start_row : start_row + len(x)]].to(dev)
                start_row += len(x)
                inputs = _normalise(_augment(x, recipe.augment, augment), plan.spec, dev)
                with compute.autocast():
                    loss = nn.functional.cross_entropy(module(inputs).float(), target)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # type: ignore[no-untyped-call]  # torch: untyped
                scaler.step(optimizer)
                scaler.update()
                total += float(loss.detach()) * len(x)
                seen += len(x)
        if not math.isfinite(total):
            raise FinetuneError(
                f"the training loss became {total} in epoch {epoch}; lower the learning rate "
                f"(now {recipe.lr:g})"
            )
        acc = _accuracy(module, dataset, rows.val, plan.spec, recipe, compute, workers)
        point = {"epoch": epoch, "train_loss": total / max(1, seen), "val_accuracy": acc, "lr": lr}
        state["curve"].append(point)
        _keep(store, plan, module, rows, dataset, compute, name, epoch, acc, state)
        tensors, meta = pack_state(module, optimizer, scaler)
        nets.put_run_state(store, plan.key, epoch, tensors, {**meta, **state})
        report(progress, epoch, recipe.epochs, {**point, "seconds": time.perf_counter() - started})
    done = {
        "run": plan.key,
        "curve": state["curve"],
        "best": state["best"],
        "kept": state["kept"],
        "provenance": _provenance(plan, rows, dataset, compute, state["curve"]),
    }
    out = _register_finished(store, plan, done, name, trained=True)
    nets.put_run(store, plan.key, done)
    return {**out, "resumed_from_epoch": resumed}


@contextlib.contextmanager
def _seeded(seed: int, device: str) -> Iterator[None]:
    """torch's global RNG (dropout ...) seeded for one epoch, restored afterwards."""
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
        torch.manual_seed(seed)
        yield


def _weights_of(store: Store, module: nn.Module) -> tuple[str, str]:
    """Store the module's weights as a blob; (blob sha256, state-dict sha256)."""
    sd = {k: v.detach().cpu() for k, v in library_model(module).state_dict().items()}
    return nets.put_blob(store, nets.tensors_bytes(sd)), state_dict_sha256(sd)


def _keep(
    store: Store, plan: RunPlan, module: nn.Module, rows: Rows, dataset: Dataset, compute: Any,
    name: str, epoch: int, acc: float, state: dict[str, Any],
) -> None:  # fmt: skip
    """Store this epoch's weights if they are the best so far or a kept Kth epoch."""
    best = state["best"]
    is_best = best is None or acc > best["val_accuracy"]
    every = plan.recipe.keep_every
    kept = bool(every) and epoch % every == 0
    if not (is_best or kept):
        return
    blob, sha = _weights_of(store, module)
    point = {"epoch": epoch, "val_accuracy": acc, "blob": blob, "weights_sha256": sha}
    if is_best:
        state["best"] = point
    if kept:
        state["kept"].append(point)
        provenance = _provenance(plan, rows, dataset, compute, state["curve"])
        _register(store, plan, f"{name}@epoch{epoch}", point, provenance, "every")


def _provenance(
    plan: RunPlan, rows: Rows, dataset: Dataset, compute: Any, curve: list[dict[str, Any]]
) -> dict[str, Any]:
    import featstore

    return {
        "run": plan.key,
        "parent": {**plan.identity.to_dict(), "architecture": plan.architecture},
        "dataset": {
            "id": dataset.id,
            "name": dataset.name,
            "fingerprint": dataset.fingerprint,
            "images_id": dataset.images_id,
            "train_rows": len(rows.train),
            "val_rows": len(rows.val),
            "val": rows.val_source,
            "test_rows_read": 0,
        },
        "recipe": plan.recipe.to_dict(),
        "seed": plan.recipe.seed,
        "featstore": featstore.__version__,
        "torch": torch.__version__,
        "device": compute.device,
        "curve": list(curve),
    }


def _register(
    store: Store, plan: RunPlan, name: str, point: dict[str, Any], provenance: dict[str, Any],
    selected: str,
) -> None:  # fmt: skip
    record = nets.NetworkRecord(
        name=name,
        parent=plan.architecture,
        head=plan.head.to_dict(),
        preprocess=plan.spec.preprocess.to_dict(),
        blob=point["blob"],
        weights_sha256=point["weights_sha256"],
        provenance={**provenance, "epoch": point["epoch"], "selected": selected,
                    "val_accuracy": point["val_accuracy"]},
    )  # fmt: skip
    nets.put_network(store, record)


def _register_finished(
    store: Store, plan: RunPlan, done: dict[str, Any], name: str, *, trained: bool
) -> dict[str, Any]:
    """Register ``name`` (best) and ``name@epochK`` (kept) for a finished run; no training."""
    provenance = done["provenance"]
    if done.get("best") is None:
        raise EntryNotFoundError(f"fine-tuning run {plan.key} kept no weights; run it again")
    _register(store, plan, name, done["best"], provenance, "best")
    names = [name]
    for point in done.get("kept") or []:
        kept_name = f"{name}@epoch{point['epoch']}"
        _register(store, plan, kept_name, point, provenance, "every")
        names.append(kept_name)
    return {
        "run": plan.key,
        "trained": trained,
        "name": name,
        "networks": names,
        "best": done["best"],
        "curve": done["curve"],
        "parent": plan.identity.to_dict(),
        "recipe": plan.recipe.to_dict(),
    }
