"""Meta's published per-batch locality statistics for the 2022 dlrm_datasets traces.

Source: https://github.com/facebookresearch/dlrm_datasets (archived), commit
``6f46ba7906e47a2f6bab6499056480d07d784eb8``, ``embedding_bag/2022/locality_stats.txt``
(MIT licence, Copyright (c) Facebook, Inc. and its affiliates).  The numbers below are
the mean over the 16 shards ``fbgemm_t788_bs131072_{0..15}.pt``, as derived in
``shared/traces/meta_dlrm_datasets_stats/reuse_histograms.csv`` (family
``2022_shards_mean``).  Each shard is one batch of 131072 samples over 788 tables.

``FAMILIES`` is the calibration used by the ``meta2022`` preset: table families
(Zipf exponent, requests per table row, share of all requests) whose mixture
reproduces ``FRAC_OF_UNIQUE_ROWS`` and the mean in-batch reuse.  It was fitted by
:mod:`bench.traces.calibrate_meta` (non-negative least squares over simulated families).
"""

NUM_TABLES = 788
BATCH_SIZE = 131072
MEAN_INDICES_PER_BATCH = 1405446071
MEAN_UNIQUE_ROWS_PER_BATCH = 110259895
MEAN_POOLING_FACTOR = 13.607
MEAN_REUSE = MEAN_INDICES_PER_BATCH / MEAN_UNIQUE_ROWS_PER_BATCH

#: Bins of in-batch accesses per touched row: (0,1], (1,2], (2,4], ..., (16384,32768], 32768+.
BIN_EDGES = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
#: Fraction of distinct touched rows in each bin.
FRAC_OF_UNIQUE_ROWS = (
    0.342, 0.144, 0.149, 0.138, 0.112, 0.068, 0.029, 0.010, 0.004, 0.002, 0.001, 0.001, 0.0, 0.0, 0.0, 0.0, 0.0,
)
#: Fraction of all accesses that go to rows in each bin.
FRAC_OF_ACCESSES = (
    0.027, 0.023, 0.040, 0.068, 0.105, 0.120, 0.099, 0.070, 0.059, 0.054, 0.040, 0.0717, 0.064, 0.047, 0.021,
    0.0171, 0.0751,
)

#: (zipf exponent, requests per table row in one batch, share of the batch's requests).
FAMILIES = (
    (0.0, 0.25, 0.003137),
    (0.0, 1.0, 0.024005),
    (0.0, 4.0, 0.073425),
    (0.5, 16.0, 0.225275),
    (0.5, 64.0, 0.027867),
    (0.8, 64.0, 0.273268),
    (1.2, 4.0, 0.293234),
    (1.5, 1.0, 0.079789),
)
