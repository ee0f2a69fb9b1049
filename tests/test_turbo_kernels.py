"""Every registered quantize / dequantize variant of the turbo formats against the torch reference
(kernels/formats/turbo.py): encodings bit-identical in every Packed field, decodings within the
tolerance derived in `decode_tolerance`. Triton runs in its interpreter, on small shapes."""
import math

import pytest
import torch

from quantbench.kernels import formats
from quantbench.kernels.checks import check_packed_equal, float_tolerance
from quantbench.kernels.formats.turbo import qjl_matrix, qjl_scale
from quantbench.kernels.registry import OPS, Case, variants

SPECS = ["turbo2", "turbo3", "turbo4", "turbo4_mse", "turbo3:group=32", "turbo2:rotate=0",
         "turbo4:signs=0:norm_correction=0", "turbo4_mse:group=64"]
SHAPES = [(300, 64), (5, 128), (3, 256)]  # 300 rows: several numba lane batches and prange tasks


def kernel_variants(op, spec):
    """The variants under test: all but the reference that can run here (Triton: interpreted)."""
    found = [v for v in variants(op=op, format=spec) if (v.backend, v.name) != ("torch", "reference")]
    return [v for v in found if v.availability() is None]


def run_variant(v, op, spec, x, monkeypatch):
    """Build the variant on inputs x (instead of the op's seeded Gaussian rows) and run it once."""
    monkeypatch.setattr(OPS[op], "make_inputs", lambda case: {"x": x.to(case.device)})
    case = Case.make(op, spec, rows=x.shape[0], dim=x.shape[-1])
    return v.build(case)()


def gaussian(rows, dim, seed=0):
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed))


def awkward(rows, dim):
    """Zero rows, exact zeros, outlier channels and tiny rows: the edges of normalization."""
    x = gaussian(rows, dim, seed=1)
    x[::7] = 0.0
    x[1::5, : dim // 2] = 0.0
    x[:, 3] *= 30
    x[2::9] *= 1e-3
    return x


def boundary_ties(spec):
    """Rows whose values equal the format's decision boundaries exactly: with rotate=0 and signs=0 a
    row of norm exactly 1 is quantized as is, so bucketize's tie rule (lower cell) is exercised."""
    g = formats.get(spec).group
    bounds = formats.get(spec).boundaries(g)
    row = torch.zeros(g)
    row[: len(bounds)] = bounds
    up = down = torch.tensor(math.sqrt(1 - float((bounds.double() ** 2).sum())), dtype=torch.float32)
    for _ in range(16):  # the filler value, nudged an ulp at a time until the norm rounds to 1.0f
        for filler in (up, down):
            row[-1] = filler
            if float(row.double().square().sum().sqrt().float()) == 1.0:
                return row.repeat(3, 1)
        up = torch.nextafter(up, torch.tensor(2.0))
        down = torch.nextafter(down, torch.tensor(0.0))
    raise AssertionError("no filler value gives a row of norm exactly 1")


def decode_tolerance(fmt, packed, ref) -> float:
    """Formats without QJL: the kernels repeat the reference's float32 operations in its order, so
    they agree exactly (0). turbo4: acc_j = sum_i ±S_ij is summed in another order than torch's
    matmul; two orders of a g-term float32 sum differ by at most 2(g-1)u sum_i |S_ij| (u = 2^-24),
    scaled by the group's sqrt(pi/2)/g * ||r||; the orthonormal FWHT turns a max-abs error e into at
    most sqrt(g) e; the remaining log2(g) + 3 roundings on each side add float_tolerance."""
    if not fmt.qjl:
        return 0.0
    g = fmt.group_for(packed.shape[-1])
    coef = qjl_scale(g) * float(packed["residual_norms"].float().max())
    column = float(qjl_matrix(g).abs().sum(0).max())
    order = math.sqrt(g) * 2 * (g - 1) * 2.0 ** -24 * column * coef
    return order + float_tolerance(torch.float32, int(math.log2(g)) + 3, float(ref.abs().max()))


def test_numba_and_triton_variants_are_registered_and_available_here():
    for op in ("quantize", "dequantize"):
        for spec in ("turbo2", "turbo3", "turbo4_mse"):
            keys = {(v.backend, v.name) for v in kernel_variants(op, spec)}
            assert {("numba", "parallel"), ("triton", "butterfly")} <= keys, (op, spec)
        assert ("numba", "parallel") in {(v.backend, v.name) for v in kernel_variants(op, "turbo4")}


def cases():
    for spec in SPECS:
        for rows, dim in SHAPES:
            yield spec, f"gaussian{rows}x{dim}", gaussian(rows, dim)
        yield spec, "awkward", awkward(40, 128)
    for name in ("turbo2", "turbo3", "turbo4", "turbo4_mse"):
        spec = f"{name}:group=32:rotate=0:signs=0"
        yield spec, "ties", boundary_ties(spec)


CASES = list(cases())
IDS = [f"{spec}-{name}" for spec, name, _ in CASES]


@pytest.mark.parametrize("spec, name, x", CASES, ids=IDS)
def test_quantize_variants_are_bit_identical(spec, name, x, monkeypatch):
    fmt = formats.get(spec)
    ref = fmt.encode(x)
    tested = kernel_variants("quantize", spec)
    assert tested
    for v in tested:
        out = run_variant(v, "quantize", spec, x, monkeypatch)
        case = Case.make("quantize", spec, rows=x.shape[0], dim=x.shape[-1])
        try:
            check_packed_equal(case, out, ref)
        except AssertionError as exc:
            raise AssertionError(f"{v.backend}/{v.name}: {exc}") from None


@pytest.mark.parametrize("spec, name, x", CASES, ids=IDS)
def test_dequantize_variants_match_the_reference(spec, name, x, monkeypatch):
    fmt = formats.get(spec)
    packed = fmt.encode(x)
    ref = fmt.decode(packed)
    tol = decode_tolerance(fmt, packed, ref)
    tested = kernel_variants("dequantize", spec)
    assert tested
    for v in tested:
        out = run_variant(v, "dequantize", spec, x, monkeypatch).cpu()
        assert out.shape == ref.shape and out.dtype == torch.float32
        err = float((out.double() - ref.double()).abs().max())
        assert err <= tol, f"{v.backend}/{v.name}: max abs error {err:.3g} > tolerance {tol:.3g}"


def test_turbo4_decode_tolerance_is_tight_enough_to_catch_a_dropped_qjl_term():
    x = gaussian(64, 128)
    fmt = formats.get("turbo4")
    packed = fmt.encode(x)
    ref = fmt.decode(packed)
    without_qjl = formats.get("turbo3").decode(formats.get("turbo3").encode(x))
    assert float((without_qjl - ref).abs().max()) > 100 * decode_tolerance(fmt, packed, ref)


def test_the_ops_own_checks_accept_the_numba_kernels():
    for op in ("quantize", "dequantize"):
        for spec in ("turbo3", "turbo4"):
            case = Case.make(op, spec, rows=96, dim=128, seed=5)
            v = next(v for v in kernel_variants(op, spec) if v.backend == "numba")
            OPS[op].check(case, v.build(case)(), OPS[op].reference(case))
