"""Polylines: simplify and smooth traced centre lines; join the dashes of one line.

All coordinates are metres in a projected CRS. Joining links the end of one piece to the start
of the next when the gap is short, the gap runs along both pieces' directions and sideways
offset is small: the painted dashes of a lane separator become one feature (its dash count and
painted share kept), while the parallel separator 3 m away, or a crossing line, never joins it.
A rule's ``min_length`` then drops the short isolated lines (false segments: a speck of paint
colour, a kerb fleck) unless they joined others into a dashed line (:func:`drop_short`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from shapely import LineString, Point, STRtree

__all__ = ["smooth_line", "JoinRule", "Chain", "join_pieces", "drop_short", "end_tangent"]


def _chaikin(coords: np.ndarray, iterations: int) -> np.ndarray:
    """Corner cutting (Chaikin) keeping both end points: rounds the skeleton's pixel steps."""
    for _ in range(iterations):
        if len(coords) < 3:
            return coords
        p, q = coords[:-1], coords[1:]
        cut = np.empty((2 * len(p), 2))
        cut[0::2] = 0.75 * p + 0.25 * q
        cut[1::2] = 0.25 * p + 0.75 * q
        coords = np.vstack([coords[:1], cut[1:-1], coords[-1:]])
    return coords


def smooth_line(coords: np.ndarray, tolerance: float, iterations: int = 2) -> LineString:
    """Douglas-Peucker at ``tolerance`` metres (shapely), then Chaikin smoothing."""
    line = LineString(coords).simplify(tolerance, preserve_topology=False)
    return LineString(_chaikin(np.asarray(line.coords), iterations))


@dataclass(frozen=True)
class JoinRule:
    """When two pieces of one class are the same line."""

    max_gap: float  # metres between an end and the next start
    max_angle: float = 25.0  # degrees between the gap and each piece's direction at its end
    max_offset: float = 0.6  # metres sideways, measured across the first piece's direction
    min_length: float = 0.0  # metres: a chain of ONE piece shorter than this is dropped; 0 = keep


def end_tangent(line: LineString, at_end: bool, reach: float = 2.0) -> np.ndarray:
    """Unit direction pointing out of the line at one end, from its last ``reach`` metres."""
    length = line.length
    if at_end:
        a, b = line.interpolate(max(0.0, length - reach)), line.interpolate(length)
    else:
        a, b = line.interpolate(min(length, reach)), line.interpolate(0.0)
    v = np.array([b.x - a.x, b.y - a.y])
    norm = float(np.hypot(*v))
    return v / norm if norm > 1e-9 else v


@dataclass
class Chain:
    """Pieces of one line in order (each with its orientation) and the joined geometry."""

    pieces: list[int]
    geometry: LineString
    painted_length: float

    @property
    def paint_ratio(self) -> float:
        return min(1.0, self.painted_length / self.geometry.length) if self.geometry.length \
            else 1.0


def _link_gaps(pa: np.ndarray, ta: np.ndarray, pb: np.ndarray, tb: np.ndarray,
               rule: JoinRule) -> np.ndarray:
    """Gap length of each candidate link from end (pa, outward ta) to end (pb, outward tb);
    NaN where the rule refuses it. Vectorised over candidates: noisy masks give many."""
    gap = pb - pa
    dist = np.hypot(gap[:, 0], gap[:, 1])
    u = gap / np.maximum(dist, 1e-9)[:, None]
    cos = np.cos(np.radians(rule.max_angle))
    has_a, has_b = ta.any(axis=1), tb.any(axis=1)
    # Pieces shorter than the tangent reach give no direction; the other end must then.
    along_a = np.where(has_a, (u * ta).sum(axis=1), 1.0)
    along_b = np.where(has_b, -(u * tb).sum(axis=1), 1.0)
    aligned = (dist <= 1.5 * rule.max_offset) | ((along_a >= cos) & (along_b >= cos))
    direction = np.where(has_a[:, None], ta, -tb)
    sideways = np.abs(gap[:, 0] * direction[:, 1] - gap[:, 1] * direction[:, 0])
    close = ~direction.any(axis=1) | (sideways <= rule.max_offset + 0.1 * dist)
    ok = (dist <= rule.max_gap) & aligned & close
    return np.where(ok, dist, np.nan)


def drop_short(chains: list[Chain], min_length: float) -> list[Chain]:
    """``chains`` without the isolated short ones: a chain is kept when its line is at least
    ``min_length`` metres long or when it joined two or more pieces (the dashes of a line)."""
    return [c for c in chains if len(c.pieces) > 1 or c.geometry.length >= min_length]


def join_pieces(lines: list[LineString], rule: JoinRule) -> list[Chain]:
    """Group ``lines`` into chains of one line each (greedy shortest links, no branching),
    then :func:`drop_short` at ``rule.min_length``."""
    if not lines:
        return []
    # End index e = 2 * piece + (1 at the piece's last point, 0 at its first).
    points = np.array([line.coords[k] for line in lines for k in (0, -1)], float)[:, :2]
    tangents = np.array([end_tangent(line, at_end) for line in lines
                         for at_end in (False, True)])
    tree = STRtree([Point(p) for p in points])
    left, right = tree.query([Point(p) for p in points], predicate="dwithin",
                             distance=rule.max_gap)
    keep = (left < right) & (left // 2 != right // 2)
    left, right = left[keep], right[keep]
    gaps = _link_gaps(points[left], tangents[left], points[right], tangents[right], rule)
    valid = ~np.isnan(gaps)
    order = np.argsort(gaps[valid], kind="stable")
    links = list(zip(left[valid][order].tolist(), right[valid][order].tolist(), strict=True))
    parent = list(range(len(lines)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    partner: dict[int, int] = {}  # end index -> linked end index
    for p, q in links:
        if p in partner or q in partner:
            continue
        rp, rq = root(p // 2), root(q // 2)
        if rp == rq:
            continue  # would close a loop
        parent[rp] = rq
        partner[p], partner[q] = q, p
    # End index = 2 * piece + (1 if the piece's last point else 0); links never form a loop,
    # so walking back from any piece reaches a free end where its chain begins.
    chains, used = [], set()
    for i in range(len(lines)):
        if i in used:
            continue
        entry = 2 * i
        while entry in partner:
            entry = partner[entry] ^ 1
        order, coords, painted = [], [], 0.0
        while True:
            cur = entry // 2
            used.add(cur)
            order.append(cur)
            c = np.asarray(lines[cur].coords)
            coords.extend((c if entry % 2 == 0 else c[::-1]).tolist())
            painted += lines[cur].length
            if entry ^ 1 not in partner:
                break
            entry = partner[entry ^ 1]
        chains.append(Chain(order, LineString(coords), painted))
    return drop_short(chains, rule.min_length) if rule.min_length > 0 else chains
