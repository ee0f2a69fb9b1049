"""`quantbench profile`: one case in a child process under ncu, nsys or the torch profiler, limited
to the case's NVTX range; the reports kept under results/profiles/ and summarized as records."""
