"""The benchmarks behind `scripts/benchmark.py` (not part of the installed package): the harness and its sections
(`harness`), and the deployment section (`deploy`)."""
