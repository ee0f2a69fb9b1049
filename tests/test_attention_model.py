"""The `native` and `sparse_v` attention backends inside the model (tiny random model): every call
within the op's derived tolerance of float64 attention over the stored cache, logits equal to
dequant_sdpa's to float32 accuracy, the documented fallbacks, and `throughput --attn a,b`."""
import json

import pytest
import torch

from quantbench.harness.cli import main
from quantbench.harness.model import ModelConfig, load_model
from quantbench.harness.model.attention import attention_names, dequant_sdpa, get_attention
from quantbench.kernels.attention.spec import attention_float64, attention_tolerance

CONFIG = ModelConfig(n_layers=2, n_heads=6, n_kv_heads=2, head_dim=64, dim=96, hidden_dim=128, vocab_size=100,
                     max_seq_len=64, name="tiny")
TOKENS = torch.randint(0, 100, (1, 24), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def model():
    return load_model(config=CONFIG)


def test_backends_registered():
    assert {"dequant_sdpa", "native", "sparse_v", "auto"} <= set(attention_names())


@pytest.mark.parametrize(("kv", "attn"), [(kv, attn) for attn in ("native", "sparse_v")
                                          for kv in ("q8_0", "q4_1", "q4_0_rot", "turbo3", "turbo4")]
                         + [("turbo2_tcq", "native"), ("turbo3_tcq", "native"), ("q8_0", "auto"),
                            ("turbo3", "auto"), ("turbo3_tcq", "auto")])
def test_every_call_within_tolerance_and_logits_match(model, kv, attn):
    """Prefill (causal mask) then three decode steps, each attention call checked against float64."""
    backend = get_attention(attn)
    cache = model.new_cache(1, 32, kv, attn)
    ref_cache = model.new_cache(1, 32, kv, "dequant_sdpa")
    calls = []

    def checked(q, k_store, v_store, length, mask):
        out = backend(q, k_store, v_store, length, mask)
        k, v = k_store.read(length, torch.float32), v_store.read(length, torch.float32)
        want = attention_float64(q, k, v)  # causal over the last n positions, as the model's mask
        tol = attention_tolerance(q, k, v, k_store.format.rotation_flops(q.shape[-1]))
        calls.append(float((out.double() - want).abs().max()) <= tol)
        return out

    cache.attend = checked
    logits = [model.forward(TOKENS[:, :20], cache, 0)]
    want = [model.forward(TOKENS[:, :20], ref_cache, 0)]
    for i in range(20, 23):
        logits.append(model.forward(TOKENS[:, i:i + 1], cache, i))
        want.append(model.forward(TOKENS[:, i:i + 1], ref_cache, i))
    assert len(calls) == 4 * CONFIG.n_layers and all(calls)
    for got, expected in zip(logits, want):
        torch.testing.assert_close(got, expected)  # float32 defaults: rtol 1.3e-6, atol 1e-5


@pytest.mark.parametrize(("kv", "attn"), [(None, "native"), ("f16", "native"), ("k=q8_0,v=turbo3", "native"),
                                          ("turbo2_tcq", "sparse_v")])
def test_fallback_to_dequant_sdpa(model, kv, attn):
    """Unquantized stores, formats without a kernel for the backend, and mixed K/V formats run dequant_sdpa."""
    want = model.logits(TOKENS[:, :12], kv=kv, attn="dequant_sdpa")
    assert torch.equal(model.logits(TOKENS[:, :12], kv=kv, attn=attn), want)


@pytest.mark.parametrize(("kv", "decode_backend"), [("q8_0", "native"), ("q4_0_rot", "native"),
                                                    ("turbo3", "native"), ("turbo2_tcq", "native"),
                                                    ("fp8_e4m3", "dequant_sdpa")])
def test_auto_runs_native_for_decode_steps_and_dequant_sdpa_for_prefill(model, kv, decode_backend):
    cache = model.new_cache(1, 16, kv, "dequant_sdpa")
    model.forward(TOKENS[:, :12], cache, 0)
    k_store, v_store = cache.layers[1]
    gen = torch.Generator().manual_seed(2)
    one, many = torch.randn(1, 6, 1, 64, generator=gen), torch.randn(1, 6, 4, 64, generator=gen)
    prefill_mask = torch.arange(12)[None, :] <= torch.arange(8, 12)[:, None]
    auto, decode = get_attention("auto"), get_attention(decode_backend)
    assert torch.equal(auto(one, k_store, v_store, 12, None), decode(one, k_store, v_store, 12, None))
    prefill = auto(many, k_store, v_store, 12, prefill_mask)
    assert torch.equal(prefill, dequant_sdpa(many, k_store, v_store, 12, prefill_mask))


def test_non_prefix_mask_falls_back(model):
    cache = model.new_cache(1, 16, "q8_0", "native")
    model.forward(TOKENS[:, :16], cache, 0)
    k_store, v_store = cache.layers[0]
    q = torch.randn(1, 6, 2, 64, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[0, 3] = False  # a hole: not "the first limit positions"
    want = dequant_sdpa(q, k_store, v_store, 16, mask)
    assert torch.equal(get_attention("native")(q, k_store, v_store, 16, mask), want)


def test_throughput_attention_list(tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(CONFIG.to_dict()))
    code = main(["throughput", "--config", str(config), "--kv", "turbo3", "-p", "0", "-n", "2", "-r", "1",
                 "--attn", "dequant_sdpa,native", "--no-store", "-o", "json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["attn"], r["test"]) for r in rows] == [("dequant_sdpa", "tg2"), ("native", "tg2")]
    assert all(r["tok/s"] > 0 for r in rows)
    assert main(["throughput", "--config", str(config), "-p", "0", "-n", "2", "--attn", "native,nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err
