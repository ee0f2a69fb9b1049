"""`quantbench compile`: every GPU kernel compiled for real targets on a machine without a GPU.

The kernels and their compile-time constants come from the suite's own cases: each Triton and
numba-cuda variant is built at each case and its launches are captured instead of run
(capture.py), then compiled for each target with Triton's compiler (triton_kernels.py) or numba's
NVVM (numba_kernels.py), assembled by Triton's bundled ptxas and disassembled by its cuobjdump
(toolchain.py): registers, spills, shared memory and the SASS instruction mix (sweep.py).
"""
