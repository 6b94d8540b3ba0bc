"""Peer servers for benchmarks/bench_peers.py: one small app per framework, each run in its own
side environment (see envs.py), all calling the same roadvision decode/preprocess/forward."""
