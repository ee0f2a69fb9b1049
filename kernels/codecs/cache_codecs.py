"""The fast encode and decode a KV-cache store runs instead of its format's torch code
(harness/model/kv_cache.py), per format and device type.

A provider serves some formats on one device type; given a format and head_dim it returns a
`bind(fields)` function, which ties its kernels to one store's tensors (the store's fields, all
positions) and returns a `BoundCodec`:
    encode(x, start)    x float32 contiguous [n, *rows, dim] -> encoded into positions start..start+n-1
    decode(length, out) positions 0..length-1 -> out float32 contiguous [length, *rows, dim]
Either may be None: that direction stays on the format's torch code. Both must give the format's
own encode and decode bit for bit (tests/test_cache_codecs.py checks every provider against them),
so a cache on a fast codec holds and reads exactly what the reference cache does. Binding makes
the kernels' array views of the store once: built per call they cost as much as a one-token write.

Providers register with @cache_codec in the kernel modules that hold their kernels (found by
kernels/discovery.py like variants).

The kernels are numba `parallel` functions; calls on fewer than PARALLEL_MIN_ROWS rows (positions
x batch x kv heads: a decode step's write, the attention over a short prefix) run on one numba
thread (`threads_for`). Such a call is microseconds of work, less than handing it to a second
thread; and between two cache calls torch runs the model's matmuls on its own OpenMP pool, whose
threads spin after each op while numba's kernels run on a second OpenMP runtime, so a small
two-thread call can wait for a spinning thread's scheduler slice (measured on the 2-core EPYC: a
one-token q8_0 write right after a 2048x2048 torch.mv took about 5 ms on two threads, 13 us on
one). Above it the work pays for the second thread: turbo3 decode attention at depth 1024 (3075
rows) took 313 us a call on two threads against 498 on one, and the model's decode ran at 0.93x
f16's tokens/s instead of 0.82x.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import numba

from quantbench.kernels.formats import Format


@dataclass(frozen=True)
class BoundCodec:
    encode: Callable | None
    decode: Callable | None


@dataclass(frozen=True)
class _Provider:
    name: str
    serves: Callable[[Format], bool]
    device: str
    build: Callable[[Format, int], Callable[[dict], BoundCodec]]


_PROVIDERS: list[_Provider] = []


def cache_codec(name: str, serves: Callable[[Format], bool], device: str = "cpu"):
    """Register `build(fmt, dim) -> bind` for the formats `serves` accepts on `device`."""
    def deco(build):
        _PROVIDERS.append(_Provider(name, serves, device, build))
        return build
    return deco


def fast_codec(fmt: Format, dim: int, device_type: str) -> Callable[[dict], BoundCodec] | None:
    """The registered codec's `bind` for this format, head_dim and device type; None: the torch code."""
    from quantbench.kernels.discovery import import_kernel_modules

    import_kernel_modules()
    for provider in _PROVIDERS:
        if provider.device == device_type and provider.serves(fmt):
            return provider.build(fmt, dim)
    return None


PARALLEL_MIN_ROWS = 256


@contextlib.contextmanager
def one_thread():
    """numba's kernels on the calling thread only, for the duration."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def threads_for(rows: int):
    """One numba thread below PARALLEL_MIN_ROWS rows, all of them above (see the module docstring)."""
    return one_thread() if rows < PARALLEL_MIN_ROWS else contextlib.nullcontext()
