"""Measured benchmarks (not tests): throughput, agent comparisons, per-trial costs."""
