"""sitrep's benchmarks (`make bench`): tables of ratios against baselines measured in the same run."""
