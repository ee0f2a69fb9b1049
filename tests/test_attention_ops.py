"""attn_decode / attn_prefill: every CPU variant (torch, numba) against the float64 reference over
the dequantized cache, with the op's derived tolerance, on seeded random inputs and on real K/V
captured from the embedded model; traffic model and input errors."""
import numba
import pytest
import torch

from quantbench.harness.errors import UserError
from quantbench.harness.model import load_model
from quantbench.harness.model.attention import dequant_sdpa
from quantbench.kernels import formats
from quantbench.kernels.attention.numba import MIN_TASK_ROWS, ROW_GROUP, TILE, NativeCache, split_size
from quantbench.kernels.attention.spec import (
    attention_float64,
    attention_tolerance,
    attn_shape,
    dequantized_inputs,
    quantization_error,
)
from quantbench.kernels.attention.torch import SPARSE_V_THRESHOLD, causal_mask, sparse_v_torch
from quantbench.kernels.registry import OPS, Case, get_op, variants

CPU_BACKENDS = ("torch", "numba")
SPECS = ["f32", "bf16", "q8_0", "q4_0", "q4_1", "q8_0_rot", "q4_0_rot", "turbo2", "turbo3", "turbo4",
         "turbo4_mse", "turbo2_tcq"]
ODD_SPECS = ["turbo4:group=32", "turbo3:rotate=0:group=64", "q4_0_rot:group=32", "turbo2:signs=0"]
DECODE = dict(batch=2, heads=6, kv_heads=2, n=3, ctx=70, dim=64)  # ctx not a multiple of the kernels' tile
PREFILL = dict(batch=1, heads=4, kv_heads=2, n=24, ctx=40, dim=64)


def cpu_variants(op, spec):
    return [v for v in variants(op=op, format=spec) if v.backend in CPU_BACKENDS and v.availability() is None]


def run_and_check(op, spec, dims):
    case = Case.make(op, spec, **dims)
    ref = OPS[op].reference(case)
    found = cpu_variants(op, spec)
    assert found, f"no CPU variant of {op} for {spec}"
    for v in found:
        out = v.build(case)()
        try:
            OPS[op].check(case, out, ref)
        except AssertionError as exc:
            raise AssertionError(f"{v.backend}/{v.name} on {spec}: {exc}") from None
    return {(v.backend, v.name) for v in found}


@pytest.mark.parametrize("spec", SPECS)
def test_decode_variants_match_reference(spec):
    names = run_and_check("attn_decode", spec, DECODE)
    assert ("torch", "dequant_sdpa") in names
    if formats.get(spec).name in ("q8_0", "turbo3"):
        assert {("numba", "native"), ("numba", "sparse_v"), ("torch", "native")} <= names


@pytest.mark.parametrize("spec", ["q4_1", "q8_0_rot", "turbo3", "turbo4"])
def test_prefill_variants_match_reference(spec):
    run_and_check("attn_prefill", spec, PREFILL)


@pytest.mark.parametrize("spec", ODD_SPECS)
def test_format_options_and_head_dim_128(spec):
    run_and_check("attn_decode", spec, dict(batch=1, heads=4, kv_heads=1, n=1, ctx=300, dim=128))


def test_native_splits_cover_every_row_of_their_positions_in_enough_tasks():
    # a task reads the rows (KV heads) of a row group at its positions: at 32K with 3 KV heads, at
    # least one task per thread, each a whole number of tiles, none under MIN_TASK_ROWS rows
    threads = numba.get_num_threads()
    split = split_size(32768, 3)
    assert split % TILE == 0 and -(-32768 // split) >= threads
    assert split_size(70, 4) * 4 >= MIN_TASK_ROWS and split_size(40, 1) == 40  # never past the context
    many = 4 * ROW_GROUP  # row groups share the tasks: fewer splits per group
    assert split_size(4096, many) >= split_size(4096, ROW_GROUP)


@pytest.mark.parametrize("spec", ["q4_1", "turbo4"])
def test_native_kernels_with_more_rows_than_a_row_group(spec):
    rows = dict(batch=3, kv_heads=3)  # 9 rows: a full group of ROW_GROUP and a group of one
    assert rows["batch"] * rows["kv_heads"] > ROW_GROUP
    names = run_and_check("attn_decode", spec, dict(rows, heads=6, n=2, ctx=300, dim=64))
    assert {("numba", "native"), ("numba", "sparse_v")} <= names


def test_check_catches_a_wrong_result():
    case = Case.make("attn_decode", "turbo3", **DECODE)
    ref = OPS["attn_decode"].reference(case)
    bad = ref.clone()
    bad[0, 0, 0, 0] += 1e-2  # four times the tolerance here (2.5e-3); turbo3's own error is 0.8
    with pytest.raises(AssertionError, match="exceeds tolerance"):
        OPS["attn_decode"].check(case, bad, ref)


def test_quantization_error_is_separate_from_the_kernel_error():
    coarse = quantization_error(Case.make("attn_decode", "turbo2", **DECODE))
    fine = quantization_error(Case.make("attn_decode", "q8_0", **DECODE))
    assert quantization_error(Case.make("attn_decode", "f32", **DECODE))["max_abs"] == 0.0
    assert 0 < fine["rel_rms"] < coarse["rel_rms"]


def test_traffic_model():
    op = get_op("attn_decode")
    case = Case.make("attn_decode", "turbo3", batch=1, heads=9, kv_heads=3, n=1, ctx=1024, dim=64)
    rows = 1024 * 3
    assert op.bytes(case) == 2 * rows * (3 * 8 + 2) + 2 * 9 * 64 * 4  # 3 bit planes + fp16 norm per row
    assert op.flops(case) == 4 * 9 * 1024 * 64 + 2 * rows * 64 * formats.get("turbo3").decode_flops(64)
    f32 = Case.make("attn_decode", "f32", batch=1, heads=9, kv_heads=3, n=1, ctx=1024, dim=64)
    assert op.bytes(f32) == 2 * rows * 64 * 4 + 2 * 9 * 64 * 4
    assert {c.shape_id for c in op.default_cases("turbo3")} >= {"batch=1,heads=9,kv_heads=3,n=1,ctx=32768,dim=64"}


@pytest.mark.parametrize("dims, message", [
    (dict(batch=1, heads=9, kv_heads=2, n=1, ctx=8, dim=64), "multiple of KV heads"),
    (dict(batch=1, heads=9, kv_heads=3, n=1, ctx=8), "missing dim"),
    (dict(batch=1, heads=9, kv_heads=3, n=9, ctx=8, dim=64), "do not fit"),
    (dict(batch=1, heads=9, kv_heads=3, n=1, ctx=8, dim=64, rows=3), "unknown rows"),
])
def test_bad_case_dims(dims, message):
    with pytest.raises(UserError, match=message):
        attn_shape(Case.make("attn_decode", "q8_0", **dims))


def test_bad_head_dim_for_format():
    with pytest.raises(formats.FormatError):
        attn_shape(Case.make("attn_decode", "q8_0", batch=1, heads=2, kv_heads=1, n=1, ctx=8, dim=48))


def test_native_cache_rejects_mismatched_query():
    fmt = formats.get("q8_0")
    kv = fmt.encode(torch.randn(16, 1, 2, 64))
    cache = NativeCache(fmt, kv, kv, [16])
    with pytest.raises(ValueError, match="does not fit"):
        cache.native(torch.randn(1, 3, 1, 64))
    with pytest.raises(ValueError, match="limits"):
        NativeCache(fmt, kv, kv, [17])


# ---- real K/V from the embedded model ------------------------------------------------------------
LAYER = 10
PROMPT = "The quick brown fox jumps over the lazy dog. Attention weights in a language model are peaked, " * 2


@pytest.fixture(scope="module")
def real_qkv():
    """One short prompt through the embedded model with an f32 cache: layer LAYER's q (last token) and K/V."""
    model = load_model()
    tokens = torch.tensor([model.tokenize(PROMPT)])
    cache = model.new_cache(1, tokens.shape[1], "f32")
    seen = {}

    def capture(q, k_store, v_store, length, mask):
        if len(seen) == 0 and k_store is cache.layers[LAYER][0]:
            seen.update(q=q[:, :, -1:].clone(), k=k_store.read(length, torch.float32).clone(),
                        v=v_store.read(length, torch.float32).clone())
        return dequant_sdpa(q, k_store, v_store, length, mask)

    cache.attend = capture
    model.forward(tokens, cache, 0)
    return seen


@pytest.mark.parametrize("spec", ["f32", "q8_0", "q4_0_rot", "turbo3", "turbo4"])
def test_variants_on_real_kv(real_qkv, spec, monkeypatch):
    q, k, v = real_qkv["q"], real_qkv["k"], real_qkv["v"]
    op = OPS["attn_decode"]
    monkeypatch.setattr(op, "make_inputs", lambda case: {"q": q, "k": k, "v": v})
    dequantized_inputs.cache_clear()
    try:
        dims = dict(batch=1, heads=q.shape[1], kv_heads=k.shape[2], n=1, ctx=k.shape[0], dim=q.shape[-1])
        run_and_check("attn_decode", spec, dims)
    finally:
        dequantized_inputs.cache_clear()


def test_sparse_v_on_real_kv(real_qkv):
    """Default threshold: within the float tolerance; a coarse one skips more and adds error within
    its bound (skipped rows times threshold times max|v|)."""
    q, k, v = real_qkv["q"], real_qkv["k"], real_qkv["v"]
    fmt = formats.get("turbo3")
    pk, pv = fmt.encode(k), fmt.encode(v)
    kd, vd = fmt.roundtrip(k), fmt.roundtrip(v)
    ref = attention_float64(q, kd, vd)
    cache = NativeCache(fmt, pk, pv, [k.shape[0]])
    tol = attention_tolerance(q, kd, vd, fmt.rotation_flops(q.shape[-1]))
    skipped = {}
    for threshold in (SPARSE_V_THRESHOLD, 1e-2):
        out, skipped[threshold] = cache.sparse_v(q, threshold)
        ref_torch, skipped_torch = sparse_v_torch(fmt, q, pk, pv, None, threshold)
        rows_skipped = skipped[threshold] * k.shape[0] * k.shape[2]
        bound = rows_skipped * threshold * float(vd.abs().max())
        assert float((out.double() - ref).abs().max()) <= tol + bound
        # a weight within rounding of the threshold may fall either way in the two implementations
        assert abs(skipped_torch - skipped[threshold]) <= 2 / k.shape[0]
    assert 0.0 <= skipped[SPARSE_V_THRESHOLD] <= skipped[1e-2] <= 1.0
    assert skipped[1e-2] > 0  # real attention is peaked: some rows weigh under 1%


def test_native_cache_limits_give_causal_attention():
    torch.manual_seed(0)
    fmt = formats.get("turbo3")
    q, k, v = torch.randn(1, 2, 4, 64), torch.randn(20, 1, 1, 64), torch.randn(20, 1, 1, 64)
    cache = NativeCache(fmt, fmt.encode(k), fmt.encode(v), [17, 18, 19, 20])
    ref = attention_float64(q, fmt.roundtrip(k), fmt.roundtrip(v))
    tol = attention_tolerance(q, fmt.roundtrip(k), fmt.roundtrip(v), fmt.rotation_flops(64))
    assert float((cache.native(q).double() - ref).abs().max()) <= tol
    assert causal_mask(4, 20).sum(-1).tolist() == [17, 18, 19, 20]
