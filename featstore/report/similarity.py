"""Similarity matrices (CKA, RSA) assembled from the store's pair records, for the report.

``featstore evaluate --task similarity`` stores one record per pair of representations; the
report puts them back together: one matrix per (dataset, measure, transform, rows), its
representations grouped by network and, within a network, in depth order (see
:mod:`featstore.report.depth`), so the heatmap reads from the input to the output. A pair
computed by a teammate shows up like any other record; a pair never computed stays blank.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from featstore.report.depth import depth_order

if TYPE_CHECKING:
    from featstore.evaluate.results import ResultRecord

__all__ = ["similarity_markdown", "similarity_matrices", "similarity_title"]

TASK = "similarity"


def _join(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(str(v) for v in value)
    return "-" if value is None else str(value)


def _natural(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _sides(record: Mapping[str, Any]) -> list[tuple[tuple[str, ...], dict[str, str]]] | None:
    """The two representations of a pair record: (feature keys, network/layer/pooling/view)."""
    keys = [str(k) for k in record.get("features") or []]
    sizes = (record.get("protocol") or {}).get("pair_sizes") or []
    pair = (record.get("factors") or {}).get("pair") or []
    if len(sizes) != 2 or len(pair) != 2 or sum(sizes) != len(keys):
        return None  # not a pair record this report understands
    out = []
    for n, (start, size) in enumerate(((0, sizes[0]), (sizes[0], sizes[1]))):
        f = pair[n] or {}
        info = {
            "network": _join(f.get("model")),
            "layer": _join(f.get("layer")),
            "pooling": _join(f.get("pooling")),
            "view": _join(f.get("view")),
        }
        out.append((tuple(keys[start : start + size]), info))
    return out


def _labels(infos: Sequence[dict[str, str]]) -> list[str]:
    several = len({i["network"] for i in infos}) > 1
    labels = [f"{i['network']}:{i['layer']}" if several else i["layer"] for i in infos]
    if len(set(labels)) < len(labels):  # same layer stored twice (pooling / view): say which
        labels = [
            f"{lb} ({i['pooling']}, {i['view']})" for lb, i in zip(labels, infos, strict=True)
        ]
    return labels


def similarity_matrices(
    records: Sequence[ResultRecord], orders: Mapping[str, Sequence[str]] | None = None
) -> list[dict[str, Any]]:
    """One matrix per (dataset, measure, transform, rows) from similarity pair records.

    ``orders["network"]`` (e.g. a sweep's) fixes the order of networks; layers follow the
    network's depth. Several records for one pair (seeds, teammates) are averaged.
    """
    orders = orders or {}
    groups: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for rec in records:
        if rec.get("task") != TASK:
            continue
        sides = _sides(rec)
        measure = dict(rec.get("classifier") or {})
        name = str(measure.get("name", "?"))
        value = (rec.get("metrics") or {}).get(name)
        if sides is None or not isinstance(value, (int, float)):
            continue
        proto = rec.get("protocol") or {}
        dataset = str(rec.get("dataset_name") or rec.get("dataset_id"))
        gkey = (
            dataset,
            json.dumps(measure, sort_keys=True),
            str(rec.get("transform") or "none"),
            f"{proto.get('rows')}:{proto.get('rows_id')}",
        )
        g = groups.setdefault(
            gkey,
            {
                "dataset": dataset,
                "measure": measure,
                "transform": gkey[2],
                "rows": str(proto.get("rows", "all")),
                "n_rows": proto.get("n_rows"),
                "reps": {},
                "values": {},
            },
        )
        (ka, ia), (kb, ib) = sides
        g["reps"].setdefault(ka, ia)
        g["reps"].setdefault(kb, ib)
        g["values"].setdefault(frozenset((ka, kb)), []).append(float(value))
    names = ("cka", "rbf_cka", "rsa")

    def rank(k: tuple[str, str, str, str]) -> tuple[Any, ...]:
        name = json.loads(k[1]).get("name")
        return (_natural(k[0]), names.index(name) if name in names else len(names), k[1:])

    return [_matrix(groups[gkey], orders) for gkey in sorted(groups, key=rank)]


def _matrix(g: dict[str, Any], orders: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    reps: dict[tuple[str, ...], dict[str, str]] = g["reps"]
    net_order = list(orders.get("network", ()))
    nets = sorted(
        {i["network"] for i in reps.values()},
        key=lambda n: (net_order.index(n), []) if n in net_order else (len(net_order), _natural(n)),
    )
    ordered: list[tuple[str, ...]] = []
    for net in nets:
        mine = [k for k, i in reps.items() if i["network"] == net]
        layers = depth_order(net, sorted({reps[k]["layer"] for k in mine}, key=_natural))
        mine.sort(
            key=lambda k: (layers.index(reps[k]["layer"]), reps[k]["pooling"], reps[k]["view"])
        )
        ordered.extend(mine)
    infos = [reps[k] for k in ordered]
    matrix: list[list[float | None]] = []
    for a in ordered:
        row: list[float | None] = []
        for b in ordered:
            vals = g["values"].get(frozenset((a, b)))
            row.append(1.0 if a == b else (sum(vals) / len(vals) if vals else None))
        matrix.append(row)
    return {
        "dataset": g["dataset"],
        "measure": g["measure"],
        "transform": g["transform"],
        "rows": g["rows"],
        "n_rows": g["n_rows"],
        "labels": _labels(infos),
        "networks": [i["network"] for i in infos],
        "layers": [i["layer"] for i in infos],
        "matrix": matrix,
    }


def similarity_title(m: Mapping[str, Any]) -> str:
    """``flowers: linear CKA, transform none, rows test (n=240)``."""
    measure = m["measure"]
    name = {"cka": "linear CKA", "rbf_cka": "RBF CKA", "rsa": "RSA"}.get(measure.get("name"), "?")
    bits = []
    if measure.get("debiased"):
        bits.append("debiased")
    if "sigma" in measure:
        bits.append(f"sigma={measure['sigma']:g} x median")
    if measure.get("name") == "rsa":
        bits.append(f"{measure.get('distance')} RDMs, {measure.get('compare')}")
    extra = f" ({', '.join(bits)})" if bits else ""
    n = f" (n={m['n_rows']})" if m.get("n_rows") is not None else ""
    return f"{m['dataset']}: {name}{extra}, transform {m['transform']}, rows {m['rows']}{n}"


def similarity_markdown(matrices: Sequence[Mapping[str, Any]]) -> str:
    """Each matrix as a Markdown table (values to 3 decimals, blank = pair not computed)."""
    out = []
    for m in matrices:
        labels = [str(lb).replace("|", "\\|") for lb in m["labels"]]
        out.append(f"\n### Representational similarity: {similarity_title(m)}\n")
        out.append("| | " + " | ".join(labels) + " |")
        out.append("|---|" + "|".join(["---:"] * len(labels)) + "|")
        for label, row in zip(labels, m["matrix"], strict=True):
            cells = ["" if v is None else f"{v:.3f}" for v in row]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out) + ("\n" if out else "")
