"""Lays out a lineage graph in columns, left (inputs) to right (outputs), for an SVG drawing.

A node's column is the length of the longest path reaching it (edges point
from what came first to what came of it); nodes in a column are spaced evenly
and ordered by the mean row of their parents, which keeps most edges short.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

__all__ = ["layout"]

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 260, 46, 70, 18, 12


def _columns(keys: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    parents: dict[str, list[str]] = {k: [] for k in keys}
    for source, target in edges:
        parents[target].append(source)
    column: dict[str, int] = {}

    def depth(key: str, seen: frozenset[str]) -> int:
        if key in column:
            return column[key]
        if key in seen:  # a cycle (it should not happen): cut it here
            return 0
        found = max((depth(p, seen | {key}) + 1 for p in parents[key]), default=0)
        column[key] = found
        return found

    for key in keys:
        depth(key, frozenset())
    return column


def layout(graph: dict[str, Any], *, root: str) -> dict[str, Any]:
    """Positions for ``LineageGraph.to_dict()``'s nodes and edges.

    Returns ``width``, ``height``, ``nodes`` (each with ``x``, ``y``, ``href``,
    ``title``, ``subtitle``, ``kind``, ``root``) and ``edges`` (each a cubic
    Bézier ``path`` and its ``relation``).
    """
    nodes = {n["key"]: n for n in graph["nodes"]}
    edges = [
        (e["from"], e["to"], e["relation"]) for e in graph["edges"] if e["from"] in nodes and e["to"] in nodes
    ]
    column = _columns(list(nodes), [(s, t) for s, t, _ in edges])
    by_column: dict[int, list[str]] = {}
    for key in nodes:
        by_column.setdefault(column[key], []).append(key)
    row: dict[str, float] = {}
    for c in sorted(by_column):

        def weight(key: str) -> tuple[float, str]:
            rows = [row[s] for s, t, _ in edges if t == key and s in row]
            return (sum(rows) / len(rows) if rows else 0.0, key)

        by_column[c].sort(key=weight)
        for i, key in enumerate(by_column[c]):
            row[key] = i
    tallest = max((len(v) for v in by_column.values()), default=1)
    height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y
    placed = []
    where: dict[str, tuple[float, float]] = {}
    for key, node in nodes.items():
        c = column[key]
        count = len(by_column[c])
        offset = (height - (count * NODE_H + (count - 1) * GAP_Y)) / 2
        x = PAD + c * (NODE_W + GAP_X)
        y = offset + row[key] * (NODE_H + GAP_Y)
        where[key] = (x, y)
        placed.append({**_describe(node), "x": x, "y": y, "key": key, "root": key == root})
    paths = []
    for source, target, relation in edges:
        (x1, y1), (x2, y2) = where[source], where[target]
        sx, sy, tx, ty = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
        mid = (sx + tx) / 2
        paths.append(
            {
                "path": f"M{sx:.0f},{sy:.0f} C{mid:.0f},{sy:.0f} {mid:.0f},{ty:.0f} {tx:.0f},{ty:.0f}",
                "relation": relation,
            }
        )
    columns = max(column.values(), default=0) + 1
    return {
        "width": PAD * 2 + columns * NODE_W + (columns - 1) * GAP_X,
        "height": height,
        "nodes": placed,
        "edges": paths,
        "node_w": NODE_W,
        "node_h": NODE_H,
    }


def _describe(node: dict[str, Any]) -> dict[str, Any]:
    if node["type"] == "run":
        subtitle = f"run {node['id'][:12]} · {node.get('status', '')}"
        if node.get("verdict"):
            subtitle += f" · {node['verdict']}"
        return {
            "kind": "run",
            "title": node.get("name", node["id"]),
            "subtitle": subtitle,
            "href": f"/runs/{node['id']}",
        }
    project, name, version = node.get("project", ""), node.get("name", ""), node.get("version")
    href = (
        f"/artifacts/{quote(project, safe='')}/{quote(name, safe='')}/v{version}"
        if version is not None
        else None
    )
    subtitle = f"{node.get('kind') or 'artifact'} v{version}" if version is not None else "artifact"
    return {"kind": "artifact", "title": name or node["label"], "subtitle": subtitle, "href": href}
