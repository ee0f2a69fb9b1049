"""The trellis search of the TCQ formats alone: op `tcq_encode`, spec.py.

    spec.py          the op: rotated unit-variance groups in, packed streams out; path-cost check
    numpy.py         the reference Viterbi and greedy encoders (kernels/formats/trellis.py)
    numba.py         the numba searches (kernels/formats/trellis_numba.py)
    triton.py        the searches in Triton (+ triton_jit.py)
"""
