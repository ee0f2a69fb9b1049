"""KV-cache techniques (harness/model/kv_techniques): each one's invariant on a tiny random model,
its honest bits per value at the context measured, and the policy items' parsing and errors.

- v.alpha: a = 1 is the identity, bit for bit; decode-time a multiplies what is read; encode-time
  a is stored in the codes; auto follows EXP-0046's table.
- sinks: the sink positions decode exactly in f16 / f32 and the others as the plain format.
- window: a prefill chunk gives the logits of token-by-token decode (each query reads the last W
  positions at the higher precision, the older ones quantized); a window as wide as the context
  is the higher format's policy; a window in the policy's own format changes nothing.
"""
import math

import pytest
import torch

from quantbench.harness.model import ModelConfig, load_model, parse_kv_policy
from quantbench.harness.model.kv_policy import split_policies
from quantbench.harness.model.kv_techniques import KVTechniqueError, technique_names
from quantbench.harness.model.kv_techniques.alpha import auto_alpha

CONFIG = ModelConfig(n_layers=2, n_heads=6, n_kv_heads=2, head_dim=64, dim=96, hidden_dim=128, vocab_size=100,
                     max_seq_len=64, name="tiny")
TOKENS = torch.randint(0, 100, (1, 24), generator=torch.Generator().manual_seed(0))
N_LAYERS = CONFIG.n_layers


@pytest.fixture(scope="module")
def model():
    return load_model(config=CONFIG)


def logits(model, kv, n=20):
    return model.logits(TOKENS[:, :n], kv)


def stores(model, kv, n=20):
    cache = model.new_cache(1, 32, kv)
    model.forward(TOKENS[:, :n], cache, 0)
    return cache


def test_the_techniques_are_discovered():
    assert {"alpha", "sinks", "window"} <= set(technique_names())


def test_items_round_trip_and_attach_to_their_policy():
    spec = "k=q4_0_rot,v=turbo3,sinks4=q8_0,v.window32=f16,v.alpha=1.02@encode"
    policy = parse_kv_policy(spec, n_layers=N_LAYERS)
    assert policy.spec == spec
    assert parse_kv_policy(policy.spec, n_layers=N_LAYERS) == policy
    assert split_policies("f16,turbo3,window16=q8_0,v.alpha=auto,q8_0") == [
        "f16", "turbo3,window16=q8_0,v.alpha=auto", "q8_0"]


@pytest.mark.parametrize(("spec", "message"), [
    ("turbo3,alpha=1.1", "one side only: write v.alpha"),
    ("turbo3,v.alpha=-1", "positive finite"),
    ("turbo3,v.alpha=nan", "positive finite"),
    ("turbo3,v.alpha=big", "not a number or auto"),
    ("turbo3,v.alpha=1.1@later", "alpha mode 'later'"),
    ("turbo3,v.alpha=auto@encode", "decode time only"),
    ("turbo3,sinks=q8_0", r"sinks<N>=\.\.\."),
    ("turbo3,window0=f16", "positive count"),
    ("turbo3,window8=nope", "unknown format 'nope'"),
    ("turbo3,window8=f16,window16=f16", "given twice"),
])
def test_bad_items_are_clear_errors(spec, message):
    with pytest.raises(KVTechniqueError if "twice" not in message else Exception, match=message):
        parse_kv_policy(spec, n_layers=N_LAYERS)


def test_bits_count_every_held_position_at_the_context():
    def bits(spec, ctx):
        return parse_kv_policy(spec, n_layers=N_LAYERS).bits_per_value(64, ctx)

    assert bits("turbo3,window32=f16", 512) == pytest.approx((480 * 3.25 + 32 * 16) / 512)  # about +0.8 bit
    assert bits("turbo3,v.window32=f16", 512) == pytest.approx((3.25 + (480 * 3.25 + 32 * 16) / 512) / 2)
    assert bits("q4_0_rot,sinks4=q8_0,window32=f16", 512) == pytest.approx((476 * 4.5 + 4 * 8.5 + 32 * 16) / 512)
    assert bits("turbo3,window32=f16", 16) == 16.0  # the whole context in the window
    assert bits("turbo3,window32=f16", 32768) < bits("turbo3,window32=f16", 512)
    assert bits("turbo3,v.alpha=1.05", 512) == 3.25
    with pytest.raises(Exception, match="depend on the context"):
        parse_kv_policy("turbo3,sinks4=q8_0", n_layers=N_LAYERS).bits_per_value(64)


def test_alpha_one_is_the_identity(model):
    assert torch.equal(logits(model, "turbo3,v.alpha=1"), logits(model, "turbo3"))
    assert torch.equal(logits(model, "turbo3,v.alpha=1@encode"), logits(model, "turbo3"))


def test_decode_alpha_scales_what_is_read_and_encode_alpha_is_stored(model):
    plain, scaled = stores(model, "turbo3"), stores(model, "turbo3,v.alpha=1.1")
    (_, v_plain), (k_scaled, v_scaled) = plain.layers[0], scaled.layers[0]  # layer 0: the same K and V written
    assert torch.equal(v_scaled.read(20, torch.float32), v_plain.read(20, torch.float32) * 1.1)
    assert k_scaled.format is not None  # K is untouched: still the plain store
    encoded = stores(model, "q8_0,v.alpha=1.5@encode")
    v_store = encoded.layers[0][1]
    assert v_store.inner.packed(20)["d"].abs().max() > stores(model, "q8_0").layers[0][1].packed(20)["d"].abs().max()


def test_auto_alpha_follows_the_seed_table():
    assert auto_alpha(3.25, 2048) == pytest.approx(1.022) and auto_alpha(3.25, 32768) == pytest.approx(1.002)
    assert auto_alpha(2.25, 2048) == pytest.approx(1.039) and auto_alpha(2.25, 1 << 20) == pytest.approx(1.094)
    assert auto_alpha(2.25, 8192) == pytest.approx((1.039 + 1.094) / 2)  # halfway in log2(ctx)
    assert auto_alpha(4.25, 512) == 1.0 and math.isfinite(auto_alpha(3.0, 1))


def test_sink_positions_decode_exactly_and_the_rest_as_the_format(model):
    cache, plain, full = stores(model, "q4_0,sinks3=f32"), stores(model, "q4_0"), stores(model, "f32")
    (k, _), (k_plain, _), (k_full, _) = cache.layers[0], plain.layers[0], full.layers[0]
    got = k.read(20, torch.float32)
    assert torch.equal(got[:3], k_full.read(3, torch.float32))
    assert torch.equal(got[3:], k_plain.read(20, torch.float32)[3:])


def test_window_prefill_equals_token_by_token_decode(model):
    kv = "q4_0,window5=f32"
    prefill = model.forward(TOKENS[:, :16], model.new_cache(1, 32, kv), 0)[0]
    cache = model.new_cache(1, 32, kv)
    steps = torch.cat([model.forward(TOKENS[:, i:i + 1], cache, i)[0] for i in range(16)])
    torch.testing.assert_close(prefill, steps, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(prefill, logits(model, "q4_0", 16)[0], atol=1e-3)  # the window does something
    assert not torch.allclose(prefill, logits(model, None, 16)[0], atol=1e-3)  # and old positions are quantized


def test_window_positions_decode_exactly(model):
    assert torch.allclose(logits(model, "q4_0,window32=f32"), logits(model, None), atol=1e-5)
    torch.testing.assert_close(logits(model, "q4_0,window4=q4_0"), logits(model, "q4_0"), rtol=1e-5, atol=1e-5)


def test_technique_stores_fall_back_from_native_attention(model):
    want = model.logits(TOKENS[:, :20], "turbo3,v.alpha=1.1", attn="dequant_sdpa")
    for attn in ("native", "auto"):
        torch.testing.assert_close(model.logits(TOKENS[:, :20], "turbo3,v.alpha=1.1", attn=attn), want)


def test_one_side_specs_refuse_techniques():
    with pytest.raises(Exception, match="give techniques in the policy of both sides"):
        parse_kv_policy(k="turbo3,sinks4=q8_0", v="turbo3", n_layers=N_LAYERS)


class FakeStore:
    def __init__(self, old, recent, window):
        self.old, self.recent = old, recent
        self.recent_mask = (lambda positions, keys: positions - keys < window) if window else None

    def read(self, length, dtype):
        return self.old[:length].to(dtype)

    def read_recent(self, length, dtype):
        return self.recent[:length].to(dtype)


@pytest.mark.parametrize(("n", "with_mask"), [(4, True), (1, True), (1, False)])  # prefill; decode's own path
@pytest.mark.parametrize(("k_window", "v_window"), [(3, 3), (3, 0), (0, 5)])
def test_windowed_attention_picks_each_pairs_key_and_value(k_window, v_window, n, with_mask):
    from quantbench.harness.model.attention.windowed import windowed_sdpa

    g = torch.Generator().manual_seed(3)
    length, heads, kv_heads, d = 10, 4, 2, 8
    k_old, k_new, v_old, v_new = (torch.randn(length, 1, kv_heads, d, generator=g) for _ in range(4))
    q = torch.randn(1, heads, n, d, generator=g)
    mask = torch.arange(length)[None, :] <= torch.arange(length - n, length)[:, None] if with_mask else None
    got = windowed_sdpa(q, FakeStore(k_old, k_new, k_window), FakeStore(v_old, v_new, v_window), length, mask)
    for h in range(heads):
        kv = h // (heads // kv_heads)
        for i in range(n):
            p = length - n + i
            keys = [k_new[j, 0, kv] if p - j < k_window else k_old[j, 0, kv] for j in range(p + 1)]
            values = [v_new[j, 0, kv] if p - j < v_window else v_old[j, 0, kv] for j in range(p + 1)]
            weights = torch.softmax(torch.stack(keys).double() @ q[0, h, i].double() / math.sqrt(d), dim=0)
            want = weights @ torch.stack(values).double()
            torch.testing.assert_close(got[0, h, i].double(), want, rtol=1e-5, atol=1e-6)


def channel_stats(seed=7, unit_moments=None):
    from quantbench.harness.model.kv_calibration import KVCalibration

    g = torch.Generator().manual_seed(seed)
    shape = (CONFIG.n_kv_heads, CONFIG.head_dim)
    absmax = {(layer, side): torch.rand(shape, generator=g) * 4 + 0.1 for layer in range(N_LAYERS) for side in "kv"}
    return KVCalibration(absmax, {key: value / 3 for key, value in absmax.items()}, "seeded", unit_moments)


@pytest.fixture
def calibrated(model):
    model.kv_stats = channel_stats()
    yield model
    model.kv_stats = None


@pytest.mark.parametrize("item", ["k.equalize=1", "k.equalize=auto", "dc=on", "reorder=on"])
def test_lossless_formats_keep_the_logits_under_each_transform(calibrated, item):
    torch.testing.assert_close(logits(calibrated, f"f32,{item}"), logits(calibrated, "f32"), rtol=1e-5, atol=1e-5)
    assert not torch.equal(logits(calibrated, f"q4_0,{item}"), logits(calibrated, "q4_0"))


def test_equalize_keeps_q_dot_k_and_strength_zero_is_the_identity(calibrated):
    from quantbench.harness.model.kv_techniques.equalize import channel_scales

    s = channel_scales(channel_stats().absmax(0, "k"), 1.0)
    assert torch.allclose(s.log().mean(-1), torch.zeros(CONFIG.n_kv_heads), atol=1e-3)  # geometric mean 1
    q, k = torch.randn(CONFIG.n_kv_heads, 64), torch.randn(CONFIG.n_kv_heads, 64)
    torch.testing.assert_close(((q / s) * (k * s)).sum(-1), (q * k).sum(-1))
    assert torch.equal(logits(calibrated, "q4_0,k.equalize=0"), logits(calibrated, "q4_0"))


def test_dc_removal_stores_zero_mean_tokens(calibrated):
    cache = stores(calibrated, "q8_0,dc=on")
    inner = cache.layers[0][0].inner.read(20, torch.float32)
    assert float(inner.mean(-1).abs().max()) < 2e-2  # the mean is removed to fp16 and q8_0 accuracy
    assert float(stores(calibrated, "q8_0").layers[0][0].read(20, torch.float32).mean(-1).abs().max()) > 0.05


def test_reorder_deals_the_largest_channels_to_every_group():
    from quantbench.harness.model.kv_techniques.reorder import dealt_order

    absmax = torch.arange(64.0).flip(0)[None, :]  # channel 0 largest
    order = dealt_order(absmax, groups=2)[0]
    assert sorted(order.tolist()) == list(range(64))
    assert order[:32].tolist() == list(range(0, 64, 2)) and order[32:].tolist() == list(range(1, 64, 2))


def test_walsh_order_is_a_sequency_sort_and_only_blocks_and_trellises_notice(model):
    from quantbench.harness.model.kv_techniques.walsh import sequency_order
    from quantbench.kernels.formats.rotation import fwht

    rows = fwht(torch.eye(16))[sequency_order(16)] > 0
    assert (rows[:, 1:] != rows[:, :-1]).sum(-1).tolist() == list(range(16))
    torch.testing.assert_close(logits(model, "turbo3,walsh=on"), logits(model, "turbo3"), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(logits(model, "q4_0_rot,walsh=on"), logits(model, "q4_0_rot"), atol=1e-4)
    with pytest.raises(KVTechniqueError, match="q4_0 does not rotate"):
        logits(model, "q4_0,walsh=on")


def test_calibrated_side_data_is_counted():
    def bits(spec, ctx=512):
        return parse_kv_policy(spec, n_layers=N_LAYERS).bits_per_value(64, ctx)

    assert bits("turbo3,k.equalize=auto") == pytest.approx(3.25 + 16 / 512 / 2)  # K only: half the values
    assert bits("turbo3,dc=on") == pytest.approx(3.25 + 16 / 64)
    assert bits("turbo3,reorder=on") == pytest.approx(3.25 + 6 / 512)


def test_calibration_of_a_real_tokenizer_model(tmp_path):
    from model_helpers import random_hf_weights, tiny_hf_config, write_gguf

    from quantbench.harness.model.kv_calibration import calibrate

    cfg = tiny_hf_config()
    write_gguf(tmp_path / "tiny.gguf", cfg, random_hf_weights(cfg))
    tiny = load_model(tmp_path / "tiny.gguf")
    stats = calibrate(tiny, n_seq=2, length=32)
    assert stats.absmax(1, "k").shape == (2, 32) and bool((stats.absmax(1, "k") > 0).all())
    assert bool((stats.mean_square(0, "v") <= stats.absmax(0, "v") ** 2 + 1e-6).all())
    assert stats.source.endswith(":2x32")


def test_kivi_groups_quantize_per_channel_and_keep_their_range():
    from quantbench.kernels.formats.token_groups import token_group_format

    fmt = token_group_format("kivi2:group=4")
    x = torch.randn(4, 1, 2, 64, generator=torch.Generator().manual_seed(1))
    x[:, 0, 0, 5] = 0.75  # a constant channel decodes exactly
    levels, scale, low = fmt.quantize(x)
    decoded = fmt.dequantize(levels, scale, low)
    assert int(levels.max()) <= 3 and decoded[:, 0, 0, 5].eq(0.75).all()
    assert bool((decoded - x).abs().le(scale.float() / 2 + 1e-3).all())  # at most half a step from each value
    assert fmt.bits_per_value_for(64) == 2 + 32 / 4
    with pytest.raises(Exception, match="group holds 4 tokens"):
        fmt.quantize(x[:3])


def test_kivi_prefill_equals_decode_and_counts_its_residual(model):
    kv = "k=kivi2:group=4,v=q8_0"
    prefill = model.forward(TOKENS[:, :14], model.new_cache(1, 32, kv), 0)[0]
    cache = model.new_cache(1, 32, kv)
    steps = torch.cat([model.forward(TOKENS[:, i:i + 1], cache, i)[0] for i in range(14)])
    torch.testing.assert_close(prefill, steps, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(prefill, logits(model, "k=f16,v=q8_0", 14)[0], atol=1e-3)  # the groups quantize
    policy = parse_kv_policy(kv, n_layers=N_LAYERS)
    k_bits = (12 * (2 + 8) + 2 * 16) / 14  # 3 complete groups of 4 tokens, 2 tokens waiting in fp16
    assert policy.bits_per_value(64, 14) == pytest.approx((k_bits + 8.5) / 2)
    with pytest.raises(Exception, match="also takes the token-axis formats kivi2, kivi4"):
        parse_kv_policy("kivi3", n_layers=N_LAYERS)


def test_water_filling_gives_bits_where_the_variance_is():
    from quantbench.kernels.formats.klt import allocate, distortion

    variances = torch.tensor([8.0, 4, 2, 1, 0.5, 0.25, 0.1, 0.05])
    bits = allocate(variances, 3)
    assert sum(bits) == 24 and bits == sorted(bits, reverse=True) and bits[0] > bits[-1]
    assert [round(distortion(b), 4) for b in (0, 1, 2, 3)] == [1.0, 0.3634, 0.1175, 0.0345]  # Lloyd-Max's MSEs


def test_klt_beats_a_uniform_allocation_on_correlated_vectors():
    from quantbench.kernels.formats.klt import KLTQuantizer

    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(64, 64, generator=g) * torch.logspace(0, -2, 64)  # a few strong directions
    x = torch.randn(2000, 64, generator=g) @ mixing.T
    unit = x / x.norm(dim=-1, keepdim=True)
    moment = unit.T.double() @ unit.double() / len(unit)
    nmse = float((KLTQuantizer(moment, 3).roundtrip(x) - x).square().sum() / x.square().sum())
    from quantbench.kernels import formats

    turbo = formats.get("turbo3")
    turbo_nmse = float((turbo.decode(turbo.encode(x)) - x).square().sum() / x.square().sum())
    assert nmse < turbo_nmse / 2


def test_klt_policies_count_their_tables_and_need_the_calibration(calibrated):
    policy = parse_kv_policy("k=klt3,v=turbo3", n_layers=N_LAYERS)
    k_bits = 3 + 16 / 64 + (16 * 64 * 64 + 3 * 64) / (512 * 64)
    assert policy.bits_per_value(64, 512) == pytest.approx((k_bits + 3.25) / 2)
    with pytest.raises(Exception, match="depend on the context"):
        policy.bits_per_value(64)
    g = torch.Generator().manual_seed(4)
    moments = {}
    for layer in range(N_LAYERS):
        for side in "kv":
            a = torch.randn(CONFIG.n_kv_heads, 64, 64, generator=g, dtype=torch.float64)
            m = a @ a.transpose(1, 2)
            moments[layer, side] = m / m.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]
    calibrated.kv_stats = channel_stats(unit_moments=moments)
    fine, coarse = logits(calibrated, "klt6"), logits(calibrated, "klt2")
    exact = logits(calibrated, "f32")
    assert (fine - exact).abs().max() < (coarse - exact).abs().max()


def test_prerope_keys_are_exact_through_a_lossless_store_and_change_kivi(model):
    torch.testing.assert_close(logits(model, "f32,k.prerope=on"), logits(model, "f32"), rtol=1e-5, atol=1e-5)
    kv = "k=kivi2:group=4,v=f32"
    assert not torch.allclose(logits(model, f"{kv},k.prerope=on", 14), logits(model, kv, 14), atol=1e-4)
    prefill = model.forward(TOKENS[:, :14], model.new_cache(1, 32, f"{kv},k.prerope=on"), 0)[0]
    cache = model.new_cache(1, 32, f"{kv},k.prerope=on")
    steps = torch.cat([model.forward(TOKENS[:, i:i + 1], cache, i)[0] for i in range(14)])
    torch.testing.assert_close(prefill, steps, rtol=1e-5, atol=1e-5)
    with pytest.raises(KVTechniqueError, match="one side only"):
        parse_kv_policy("kivi2,prerope=on", n_layers=N_LAYERS)
