"""asv benchmarks (numpy/scipy style: thin classes, params from the registry, setup does the work).

kernels.py: time_* and track_* per op, generated from the kernel registry.
quality.py, throughput.py: track_* of the records `quantbench quality` / `quantbench throughput`
stored for the commit under test. asv only knows "lower is better", so higher-is-better metrics
are tracked as their reciprocals (ms per token instead of tokens/s, x of the copy-bandwidth
time instead of % of peak).
"""
