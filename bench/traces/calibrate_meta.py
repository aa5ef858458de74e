"""Refit :data:`bench.traces.meta2022.FAMILIES` (a maintainer tool; needs scipy).

Each candidate family is one table whose requests follow Zipf(``zipf``) over
``requests / requests_per_row`` rows; its in-batch reuse histogram is simulated
with :func:`bench.traces.generate.zipf_ranks`.  For a Zipf table the fraction of
touched rows per reuse bin depends (to first order) only on the exponent and the
requests-per-row ratio, not on the absolute scale, which is why a mixture fitted
here holds at Meta's full scale and at the reduced scales the tests use.  The fit is
non-negative least squares on the unique-row histogram, with rows that force the
weights to sum to one and the mean reuse to equal Meta's (indices / unique rows).

Run ``python -m bench.traces.calibrate_meta`` and paste the printed tuple.
"""

from __future__ import annotations

import numpy as np

from bench.traces import meta2022
from bench.traces.generate import zipf_ranks
from bench.traces.stats import reuse_histogram

ZIPF_GRID = (0.0, 0.5, 0.8, 1.0, 1.2, 1.5)
RATIO_GRID = (0.05, 0.25, 1.0, 4.0, 16.0, 64.0)


def fit_families(requests: int = 400_000, seed: int = 0) -> tuple[list[tuple[float, float, float]], float]:
    """Fit the family mixture; return ``([(zipf, requests_per_row, request_share)], tv_distance)``."""
    from scipy.optimize import nnls

    rng = np.random.default_rng(seed)
    target = np.asarray(meta2022.FRAC_OF_UNIQUE_ROWS)
    target = target / target.sum()
    families, hists, unique_per_request = [], [], []
    for zipf in ZIPF_GRID:
        for ratio in RATIO_GRID:
            rows = max(1, int(requests / ratio))
            counts = np.bincount(zipf_ranks(rng, rows, zipf, requests), minlength=rows)
            unique_frac, _ = reuse_histogram(counts)
            families.append((zipf, ratio))
            hists.append(unique_frac)
            unique_per_request.append(np.count_nonzero(counts) / requests)
    h = np.asarray(hists).T
    u = np.asarray(unique_per_request)
    a = np.vstack([h, 100 * np.ones(h.shape[1]), 0.5 * (1 / u - meta2022.MEAN_REUSE)])
    weights, _ = nnls(a, np.concatenate([target, [100.0, 0.0]]))
    tv = 0.5 * float(np.abs(h @ weights - target).sum())
    request_weight = weights / u
    share = request_weight / request_weight.sum()
    chosen = [(z, r, round(float(s), 6)) for (z, r), w, s in zip(families, weights, share) if w > 1e-3]
    return chosen, tv


if __name__ == "__main__":
    chosen, tv = fit_families()
    print(f"total-variation distance of the fit: {tv:.4f}")
    print(tuple(chosen))
