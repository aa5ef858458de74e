"""SSD page layout: the order in which rows are written to SSD positions.

A layout of a table is ``order: int64[num_rows]``, a permutation: SSD position
``i`` holds row ``order[i]``, and ``rows_per_page`` consecutive positions form
one page.  Methods:

``identity``
    Row ``i`` at position ``i``.
``frequency``
    Rows by descending access count, so hot rows share pages.
``coaccess``
    Greedy seeded clustering over the co-access graph.  The sampled hyperedges
    (bags or batches) are expanded into weighted row pairs (all pairs for small
    edges, a random ring of ``pairs_per_row`` neighbours each side for large
    ones; every row gets total weight one per edge); each row keeps its
    ``max_degree`` heaviest neighbours.  Clusters of at most one page are
    grown greedily: the hottest unplaced row seeds a cluster, and the unplaced
    row with the most co-access weight to the cluster joins next, until the
    cluster fills a page or nothing unplaced is linked to it (rows without
    links become clusters of one).  Clusters are then packed into pages best
    fit by decreasing size, so none straddles two pages.  Rows in ``exclude``
    (pinned rows, read from SSD once) fill the first pages, by frequency (their
    last, partly filled page is topped up with clusters, or moves to the end).  Time and memory
    are linear in rows plus sampled pairs (pairs sorted once).
"""

from __future__ import annotations

import numba
import numpy as np

LAYOUTS = ("identity", "frequency", "coaccess")


def identity_layout(num_rows: int) -> np.ndarray:
    """Row ``i`` at SSD position ``i``."""
    return np.arange(num_rows, dtype=np.int64)


def frequency_layout(counts: np.ndarray) -> np.ndarray:
    """Rows by descending access count (ties by row id)."""
    return np.argsort(-np.asarray(counts, dtype=np.int64), kind="stable").astype(np.int64)


def positions_of(order: np.ndarray) -> np.ndarray:
    """Invert a layout: ``positions[row]`` is the SSD position of ``row``."""
    positions = np.empty(order.size, dtype=np.int64)
    positions[order] = np.arange(order.size, dtype=np.int64)
    return positions


def check_layout(order: np.ndarray, num_rows: int, name: str = "table") -> np.ndarray:
    """``order`` as int64 if it is a permutation of ``range(num_rows)``, else ``ValueError``."""
    order = np.asarray(order)
    if order.shape != (num_rows,):
        raise ValueError(f"{name}: layout has shape {order.shape}, expected ({num_rows},)")
    if not np.issubdtype(order.dtype, np.integer):
        raise ValueError(f"{name}: layout must hold integers, got {order.dtype}")
    seen = np.zeros(num_rows, dtype=np.bool_)
    if num_rows and (order.min() < 0 or order.max() >= num_rows):
        raise ValueError(f"{name}: layout entries must lie in [0, {num_rows})")
    seen[order] = True
    if not seen.all():
        raise ValueError(f"{name}: layout is not a permutation ({num_rows - int(seen.sum())} rows missing)")
    return order.astype(np.int64, copy=False)


@numba.njit(cache=True, nogil=True)
def _drop_rows(ptr, rows, exclude):
    """Remove excluded rows from every edge; drop edges left with fewer than two rows."""
    new_rows = np.empty(rows.size, dtype=np.int64)
    new_ptr = np.zeros(ptr.size, dtype=np.int64)
    n_edges = 0
    n = 0
    for e in range(ptr.size - 1):
        start = n
        for i in range(ptr[e], ptr[e + 1]):
            if not exclude[rows[i]]:
                new_rows[n] = rows[i]
                n += 1
        if n - start < 2:
            n = start
            continue
        n_edges += 1
        new_ptr[n_edges] = n
    return new_ptr[: n_edges + 1], new_rows[:n]


@numba.njit(cache=True, nogil=True)
def _expand_pairs(ptr, rows, pairs_per_row, seed):
    """Weighted row pairs ``(low, high, weight)`` of the clique expansion, ringed for large edges."""
    np.random.seed(seed)
    clique_max = 2 * pairs_per_row + 1
    total = 0
    for e in range(ptr.size - 1):
        k = ptr[e + 1] - ptr[e]
        total += k * (k - 1) // 2 if k <= clique_max else k * pairs_per_row
    low = np.empty(total, dtype=np.int64)
    high = np.empty(total, dtype=np.int64)
    weight = np.empty(total, dtype=np.float32)
    n = 0
    for e in range(ptr.size - 1):
        k = ptr[e + 1] - ptr[e]
        members = rows[ptr[e] : ptr[e + 1]].copy()
        if k <= clique_max:
            w = 1.0 / (k - 1)
            for i in range(k):
                for j in range(i + 1, k):
                    low[n] = min(members[i], members[j])
                    high[n] = max(members[i], members[j])
                    weight[n] = w
                    n += 1
        else:
            np.random.shuffle(members)
            w = 1.0 / (2 * pairs_per_row)
            for i in range(k):
                for j in range(1, pairs_per_row + 1):
                    a = members[i]
                    b = members[(i + j) % k]
                    low[n] = min(a, b)
                    high[n] = max(a, b)
                    weight[n] = w
                    n += 1
    return low, high, weight


@numba.njit(cache=True, nogil=True)
def _sum_sorted_pairs(keys_sorted, weight_sorted):
    """Merge equal consecutive keys, summing weights."""
    out_keys = np.empty(keys_sorted.size, dtype=np.int64)
    out_w = np.empty(keys_sorted.size, dtype=np.float32)
    n = -1
    for i in range(keys_sorted.size):
        if n >= 0 and keys_sorted[i] == out_keys[n]:
            out_w[n] += weight_sorted[i]
        else:
            n += 1
            out_keys[n] = keys_sorted[i]
            out_w[n] = weight_sorted[i]
    return out_keys[: n + 1], out_w[: n + 1]


@numba.njit(cache=True, nogil=True)
def _adjacency(low, high, weight, num_rows, max_degree):
    """Symmetric CSR adjacency keeping each row's ``max_degree`` heaviest neighbours."""
    degree = np.zeros(num_rows, dtype=np.int64)
    for i in range(low.size):
        degree[low[i]] += 1
        degree[high[i]] += 1
    ptr = np.zeros(num_rows + 1, dtype=np.int64)
    for r in range(num_rows):
        ptr[r + 1] = ptr[r] + degree[r]
    fill = ptr[:-1].copy()
    nbr = np.empty(ptr[-1], dtype=np.int64)
    nbr_w = np.empty(ptr[-1], dtype=np.float32)
    for i in range(low.size):
        a = low[i]
        b = high[i]
        nbr[fill[a]] = b
        nbr_w[fill[a]] = weight[i]
        fill[a] += 1
        nbr[fill[b]] = a
        nbr_w[fill[b]] = weight[i]
        fill[b] += 1
    kept_ptr = np.zeros(num_rows + 1, dtype=np.int64)
    for r in range(num_rows):
        kept_ptr[r + 1] = kept_ptr[r] + min(degree[r], max_degree)
    kept = np.empty(kept_ptr[-1], dtype=np.int64)
    kept_w = np.empty(kept_ptr[-1], dtype=np.float32)
    for r in range(num_rows):
        seg = slice(ptr[r], ptr[r + 1])
        take = kept_ptr[r + 1] - kept_ptr[r]
        if degree[r] > max_degree:
            best = np.argsort(-nbr_w[seg])[:take]
            kept[kept_ptr[r] : kept_ptr[r + 1]] = nbr[seg][best]
            kept_w[kept_ptr[r] : kept_ptr[r + 1]] = nbr_w[seg][best]
        else:
            kept[kept_ptr[r] : kept_ptr[r + 1]] = nbr[seg]
            kept_w[kept_ptr[r] : kept_ptr[r + 1]] = nbr_w[seg]
    return kept_ptr, kept, kept_w


@numba.njit(cache=True, nogil=True)
def _grow_clusters(adj_ptr, adj, adj_w, seeds, exclude, max_size, counts):
    """Clusters of at most ``max_size`` rows, grown from the hottest unplaced seed.

    The unplaced row with the most co-access weight to the cluster joins next
    (ties: the hotter row); a cluster ends when full or when no unplaced row is
    linked to it.  Returns the rows, cluster after cluster, and the cluster sizes.
    """
    num_rows = adj_ptr.size - 1
    rows = np.empty(num_rows, dtype=np.int64)
    sizes = np.empty(num_rows, dtype=np.int64)
    placed = exclude.copy()
    score = np.zeros(num_rows, dtype=np.float32)
    max_degree = 0
    for r in range(num_rows):
        max_degree = max(max_degree, adj_ptr[r + 1] - adj_ptr[r])
    candidates = np.empty(max_size * max_degree + 1, dtype=np.int64)
    pos = 0
    n_clusters = 0
    for seed in seeds:
        if placed[seed]:
            continue
        start = pos
        n_cand = 0
        best = seed
        while best >= 0:
            rows[pos] = best
            placed[best] = True
            pos += 1
            for i in range(adj_ptr[best], adj_ptr[best + 1]):
                v = adj[i]
                if placed[v]:
                    continue
                if score[v] == 0:
                    candidates[n_cand] = v
                    n_cand += 1
                score[v] += adj_w[i]
            best = -1
            if pos - start == max_size:
                break
            best_score = np.float32(0.0)
            for c in range(n_cand):
                v = candidates[c]
                if placed[v]:
                    continue
                if score[v] > best_score or (score[v] == best_score and best >= 0 and counts[v] > counts[best]):
                    best = v
                    best_score = score[v]
        for c in range(n_cand):
            score[candidates[c]] = 0
        sizes[n_clusters] = pos - start
        n_clusters += 1
    return rows[:pos], sizes[:n_clusters]


@numba.njit(cache=True, nogil=True)
def _pack_clusters(first, rows, sizes, rows_per_page):
    """Lay out ``first`` (in order), then whole clusters into pages, best fit by decreasing size.

    A cluster never straddles two pages.  Full pages come first; pages left with
    room (only when too few small clusters remain to fill them) go last.
    """
    num_rows = first.size + rows.size
    max_pages = num_rows // rows_per_page + sizes.size + 1
    page_rows = np.empty(max_pages * rows_per_page, dtype=np.int64)
    fill = np.zeros(max_pages, dtype=np.int64)
    room_head = np.full(rows_per_page + 1, -1, dtype=np.int64)
    next_same_room = np.full(max_pages, -1, dtype=np.int64)
    n_pages = (first.size + rows_per_page - 1) // rows_per_page
    for i in range(first.size):
        page_rows[i] = first[i]
        fill[i // rows_per_page] += 1
    if n_pages and fill[n_pages - 1] < rows_per_page:
        room = rows_per_page - fill[n_pages - 1]
        room_head[room] = n_pages - 1
    starts = np.zeros(sizes.size + 1, dtype=np.int64)
    for c in range(sizes.size):
        starts[c + 1] = starts[c] + sizes[c]
    for c in np.argsort(-sizes, kind="mergesort"):
        p = -1
        for room in range(sizes[c], rows_per_page + 1):
            if room_head[room] >= 0:
                p = room_head[room]
                room_head[room] = next_same_room[p]
                break
        if p < 0:
            p = n_pages
            n_pages += 1
        for k in range(starts[c], starts[c + 1]):
            page_rows[p * rows_per_page + fill[p]] = rows[k]
            fill[p] += 1
        room = rows_per_page - fill[p]
        if room > 0:
            next_same_room[p] = room_head[room]
            room_head[room] = p
    order = np.empty(num_rows, dtype=np.int64)
    pos = 0
    for want_full in (True, False):
        for p in range(n_pages):
            if (fill[p] == rows_per_page) == want_full:
                order[pos : pos + fill[p]] = page_rows[p * rows_per_page : p * rows_per_page + fill[p]]
                pos += fill[p]
    return order


def coaccess_layout(
    counts: np.ndarray,
    edge_ptr: np.ndarray,
    edge_rows: np.ndarray,
    rows_per_page: int,
    *,
    exclude: np.ndarray | None = None,
    pairs_per_row: int = 4,
    max_degree: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """Order one table's rows so that co-accessed rows share pages.

    Parameters
    ----------
    counts : ndarray
        Per-row access counts; also fixes ``num_rows``.
    edge_ptr, edge_rows : ndarray
        Co-access hyperedges in CSR form (``EdgeSample.table_edges``).
    rows_per_page : int
        Positions per SSD page.
    exclude : bool ndarray, optional
        Rows kept out of the clustering (e.g. pinned rows); they fill the first pages by frequency.
    pairs_per_row : int
        Ring neighbours per side for edges larger than ``2 * pairs_per_row + 1`` rows.
    max_degree : int
        Heaviest neighbours kept per row.
    seed : int
        Seeds the ring shuffles.

    Returns
    -------
    ndarray of int64
        The layout permutation.
    """
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    num_rows = counts.size
    if rows_per_page <= 0 or pairs_per_row <= 0 or max_degree <= 0:
        raise ValueError(
            f"rows_per_page, pairs_per_row and max_degree must be positive, got {rows_per_page}, {pairs_per_row}, {max_degree}"
        )
    edge_ptr = np.ascontiguousarray(edge_ptr, dtype=np.int64)
    edge_rows = np.ascontiguousarray(edge_rows, dtype=np.int64)
    if edge_rows.size and (edge_rows.min() < 0 or edge_rows.max() >= num_rows):
        raise ValueError(f"co-access edges name rows outside [0, {num_rows})")
    exclude = np.zeros(num_rows, np.bool_) if exclude is None else np.asarray(exclude, dtype=np.bool_)
    if exclude.shape != (num_rows,):
        raise ValueError(f"exclude has shape {exclude.shape}, expected ({num_rows},)")
    edge_ptr, edge_rows = _drop_rows(edge_ptr, edge_rows, exclude)
    low, high, weight = _expand_pairs(edge_ptr, edge_rows, int(pairs_per_row), int(seed))
    del edge_rows
    keys = low * num_rows + high
    del low, high
    by_key = np.argsort(keys)
    keys, weight = _sum_sorted_pairs(keys[by_key], weight[by_key])
    del by_key
    adj_ptr, adj, adj_w = _adjacency(keys // num_rows, keys % num_rows, weight, num_rows, int(max_degree))
    del keys, weight
    hottest = frequency_layout(counts)
    cluster_rows, cluster_sizes = _grow_clusters(adj_ptr, adj, adj_w, hottest, exclude, int(rows_per_page), counts)
    del adj_ptr, adj, adj_w
    return _pack_clusters(hottest[exclude[hottest]], cluster_rows, cluster_sizes, int(rows_per_page))
