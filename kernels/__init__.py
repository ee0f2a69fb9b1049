"""Formats and kernels: the bottom two layers of quantbench (harness -> kernels -> formats).

    kernels/
      registry.py        Case, Op, Variant, `register_op`, the `@variant` decorator, availability
      discovery.py       walks the family packages below and loads `quantbench.plugins` entry points
      checks.py          tolerances and output checks shared by the op specs
      row_cases.py       seeded row inputs shared by the row-wise ops
      storage.py         the results and cache folders, atomic writes
      numba_cache.py     drops numba's cached kernels when any source here changed (run on import)
      errors.py          UserError, FormatError
      formats/           the formats (encode, decode, bits, layout) and their math: rotation,
                         Lloyd-Max, trellis (+ its numba search and table training)
      common/            helpers shared by one backend's kernels (numba fp16 bits, numba-cuda views)
      codecs/            ops quantize, dequantize
      fwht/              op fwht
      attention/         ops attn_decode, attn_prefill
      matmul/            ops gemv, gemm
      tcq/               op tcq_encode

Each family package holds its ops' `spec.py` (inputs, reference, bytes, FLOPs, check) and one
module per backend (`torch.py`, `numba.py`, `triton.py` with its device code in `triton_jit.py`,
`cuda.py` with `cuda_jit.py`); a family with kernels for several format families names them
`<formats>_<backend>.py`. Modules import optional backends (triton, numba-cuda) lazily, inside
their factories, so registering never fails on a machine without them. Nothing here imports
`quantbench.harness`.
"""

from quantbench.kernels.numba_cache import drop_stale_caches

drop_stale_caches()
