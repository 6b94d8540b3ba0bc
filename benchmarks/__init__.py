"""Benchmarks: each prints figures; see RESULTS.md."""
