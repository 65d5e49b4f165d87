"""Training data: the deterministic dummy datasets, the checks `train` and `check-data` share,
and the leakage check against eval suites. May import: eval and everything below it."""
