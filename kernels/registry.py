"""Kernel registry: ops, cases and variants.

An *op* (`quantize`, `dequantize`, `fwht`, ...) declares once how to make a case's seeded inputs,
the reference result, and the bytes and FLOPs the case must move and do. A *variant* is a factory
registered with `@variant(op, backend, name, formats=...)`: it receives a `Case`, does all
packing and allocation outside the timed region, and returns a no-argument callable that runs
the kernel and returns its output (tritonbench's `return lambda: ...`).

    @variant("dequantize", backend="numba", name="parallel", formats=("q8_0", "q4_0"), needs=("numba",))
    def dequantize_blocks_numba(case):
        packed = case.format_obj.encode(case.inputs()["x"])
        out = ...
        return lambda: kernel(packed, out)
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Callable

import torch

from quantbench.kernels import formats as formats_registry
from quantbench.kernels.errors import UserError


# ---- cases -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One benchmark point: op, format spec, named integer dimensions, dtype, device, seed."""

    op: str
    format: str
    dims: tuple[tuple[str, int], ...]
    dtype: str = "float32"
    device: str = "cpu"
    seed: int = 0

    @classmethod
    def make(cls, op: str, format: str, dtype="float32", device="cpu", seed=0, **dims) -> "Case":
        return cls(op, format, tuple(dims.items()), dtype, device, seed)

    def __getattr__(self, name):  # case.rows, case.dim, case.ctx ...
        for key, value in object.__getattribute__(self, "dims"):
            if key == name:
                return value
        raise AttributeError(name)

    @property
    def id(self) -> str:
        shape = ",".join(f"{k}={v}" for k, v in self.dims)
        return f"{self.op}[{self.format}]({shape},{self.dtype},{self.device})"

    @property
    def shape_id(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.dims)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def format_obj(self):
        return formats_registry.get(self.format)

    def with_device(self, device: str) -> "Case":
        return Case(self.op, self.format, self.dims, self.dtype, device, self.seed)

    def inputs(self) -> dict[str, torch.Tensor]:
        """The op's seeded inputs for this case, on the case's device."""
        return get_op(self.op).make_inputs(self)

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


# ---- ops -------------------------------------------------------------------------------------
@dataclass
class Op:
    """An op: its traffic model, its seeded inputs, its reference, its baseline variant."""

    name: str
    make_inputs: Callable[[Case], dict[str, torch.Tensor]]
    reference: Callable[[Case], object]
    bytes: Callable[[Case], int]
    flops: Callable[[Case], int]
    default_cases: Callable[[str], list[Case]]  # format spec -> cases for `quantbench run`
    baseline: tuple[str, str] = ("torch", "reference")  # (backend, variant) speedups refer to
    description: str = ""
    formats: Callable[[], list[str]] | None = None  # formats the op applies to (None: all)
    check: Callable[[Case, object, object], None] | None = None  # raises AssertionError on a wrong output
    # `quantbench run` measures the ops with in_run, on run_formats (None: every format the op takes)
    # and on the default cases run_filter keeps (None: all): the cases of the embedded model's size
    in_run: bool = False
    run_formats: tuple[str, ...] | None = None
    run_filter: Callable[[Case], bool] | None = None
    dims: tuple[str, ...] = ()  # the case dimensions, every one required
    dtypes: tuple[str, ...] = ("float32",)  # the float dtypes of the unpacked side a case may take
    validate: Callable[[Case], None] | None = None  # raises UserError / FormatError for a case it cannot run

    def run_specs(self) -> list[str] | None:
        """The formats `quantbench run` measures the op on (None: every format it takes)."""
        return list(self.run_formats) if self.run_formats else None

    def run_cases(self, spec: str) -> list[Case]:
        """The default cases of a format that `quantbench run` measures."""
        return [c for c in self.default_cases(spec) if self.run_filter is None or self.run_filter(c)]

    def check_dims(self, dims: dict[str, int], dtype: str = "float32") -> None:
        """Dimension names and values, and the dtype, a user gave for a case (UserError naming the
        problem). Whether the case's format can hold them is `check_case`."""
        missing = [d for d in self.dims if d not in dims]
        unknown = [d for d in dims if d not in self.dims]
        if self.dims and (missing or unknown):  # an op that declares no dims takes any
            raise UserError(f"{self.name}: case dims are {', '.join(self.dims)}"
                            + (f"; missing {', '.join(missing)}" if missing else "")
                            + (f"; unknown {', '.join(unknown)}" if unknown else ""))
        bad = [f"{d}={v}" for d, v in dims.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1]
        if bad:
            raise UserError(f"{self.name}: case dims must be positive integers, got {', '.join(bad)}")
        if dtype not in self.dtypes:
            raise UserError(f"{self.name}: dtype {dtype!r} is not one of {', '.join(self.dtypes)}")

    def check_case(self, case: Case) -> None:
        """Everything about a case the op cannot run: its dims and dtype, then the op's own checks
        (the format's row length, head counts...)."""
        self.check_dims(dict(case.dims), case.dtype)
        if self.validate:
            self.validate(case)


OPS: dict[str, Op] = {}


def register_op(op: Op) -> Op:
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} registered twice")
    OPS[op.name] = op
    return op


def get_op(name: str) -> Op:
    load_all()
    if name not in OPS:
        raise KeyError(f"unknown op {name!r}; known ops: {', '.join(OPS)}")
    return OPS[name]


# ---- variants --------------------------------------------------------------------------------
NEEDS = ("numba", "triton", "cuda", "numba-cuda")


@dataclass
class Variant:
    op: str
    backend: str
    name: str
    factory: Callable[[Case], Callable[[], object]]
    # the formats it handles: format names (not specs), or a predicate on a Format (a kernel written
    # for a family, e.g. every trellis format, also serves the family's formats added later); None: all
    formats: tuple[str, ...] | Callable[[object], bool] | None = None
    needs: tuple[str, ...] = ()
    device: str = "cpu"  # where its tensors live when the machine has a GPU ("cuda" for GPU kernels)
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.op, self.backend, self.name)

    def supports(self, format_spec: str) -> bool:
        name, _ = formats_registry.parse_spec(format_spec)
        if self.formats is None:
            return True
        if not callable(self.formats):
            return name in self.formats
        try:
            return bool(self.formats(formats_registry.get(name)))
        except formats_registry.FormatError:
            return False

    def format_names(self) -> list[str] | None:
        """The registered formats it handles (None: all)."""
        if self.formats is None:
            return None
        return [n for n in formats_registry.names() if self.supports(n)]

    def availability(self) -> str | None:
        """None when the variant can run here, else the reason it cannot."""
        for need in self.needs:
            reason = _need_missing(need)
            if reason:
                return reason
        return None

    def run_device(self) -> str:
        """Device its case tensors go on: the GPU where there is one, else the CPU (interpreter)."""
        if self.device == "cuda" and torch.cuda.is_available():
            return "cuda"
        return "cpu"

    def build(self, case: Case) -> Callable[[], object]:
        reason = self.availability()
        if reason:
            raise Unavailable(f"{self.op}/{self.backend}/{self.name}: unavailable: {reason}")
        return self.factory(case.with_device(self.run_device()))


class Unavailable(RuntimeError):
    """A variant that cannot run on this machine; the message says why."""


VARIANTS: list[Variant] = []


def variant(op: str, backend: str, name: str, formats=None, needs=(), device="cpu", description=""):
    """Register a variant factory for `op` (see module docstring)."""

    def wrap(factory):
        declared = formats if callable(formats) or not formats else tuple(formats)
        new = Variant(op, backend, name, factory, declared, tuple(needs), device,
                      description or (factory.__doc__ or "").strip())
        for v in VARIANTS:
            if v.key == new.key and _overlap(v, new):
                raise ValueError(f"variant {op}/{backend}/{name} registered twice for the same formats")
        VARIANTS.append(new)
        return factory

    return wrap


def _overlap(a: Variant, b: Variant) -> bool:
    if a.formats is None or b.formats is None:
        return True
    return bool(set(a.format_names()) & set(b.format_names()))


def variants(op=None, format=None, backend=None, name=None) -> list[Variant]:
    load_all()
    out = []
    for v in VARIANTS:
        if op and v.op != op:
            continue
        if backend and v.backend != backend:
            continue
        if name and v.name != name:
            continue
        if format and not v.supports(format):
            continue
        out.append(v)
    return out


def find_variant(op: str, format: str, backend: str, name: str) -> Variant:
    found = variants(op=op, format=format, backend=backend, name=name)
    if not found:
        raise KeyError(f"no variant {op}/{backend}/{name} for format {format}")
    return found[0]


def _need_missing(need: str) -> str | None:
    if need == "numba":
        return None if _importable("numba") else "numba not installed"
    if need == "triton":
        if not _importable("triton"):
            return "triton not installed"
        if torch.cuda.is_available() or interpreting_triton():
            return None
        return "no CUDA device (TRITON_INTERPRET=1 runs it in the interpreter)"
    if need == "cuda":
        return None if torch.cuda.is_available() else "no CUDA device"
    if need == "numba-cuda":
        if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
            return None if _importable("numba.cuda") else "numba-cuda not installed"
        if not torch.cuda.is_available():
            return "no CUDA device (NUMBA_ENABLE_CUDASIM=1 runs it in the simulator)"
        return None if _importable("numba.cuda") else "numba-cuda not installed"
    raise ValueError(f"unknown need {need!r}; known: {', '.join(NEEDS)}")


def interpreting_triton() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def simulating_cuda() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _importable(module: str) -> bool:
    """Whether the module is installed, without importing it: importing triton reads
    TRITON_INTERPRET once and for all, so an availability check must not be the first import."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def load_all() -> None:
    """Import every op and variant module, and the plugins, so their decorators have run."""
    from quantbench.kernels.discovery import import_kernel_modules

    import_kernel_modules()
