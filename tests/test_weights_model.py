"""Quantized weights installed in tiny random models: the forward equals a model built from the
dequantized weights, every matmul variant agrees, the model is restored, gptq calibrates, and the
quality table carries the weights spec."""
import pytest
import torch
from model_helpers import random_hf_weights, tiny_hf_config, write_gguf

from quantbench.harness.errors import UserError
from quantbench.harness.model import ModelConfig, load_model
from quantbench.harness.model.llama import weight_shapes
from quantbench.harness.model.runtime import Model
from quantbench.harness.quality import quality_records, quality_table
from quantbench.harness.weights import Calibration, quantize_weights
from quantbench.kernels import formats

CFG = ModelConfig(n_layers=2, n_heads=4, n_kv_heads=2, head_dim=32, dim=128, hidden_dim=256, vocab_size=300,
                  max_seq_len=64)
FLOAT32_MATMUL = 2e-5  # float32 sums of 256 products in another order, through two layers (logits ~0.1-1)


@pytest.fixture(scope="module")
def model():
    return load_model(config=CFG)


def tokens(n=24, seed=1):
    return torch.randint(CFG.vocab_size, (1, n), generator=torch.Generator().manual_seed(seed))


def dequantized_model(model, qw) -> Model:
    weights = {n: model.transformer.w[n.replace(".", "_")].data.clone() for n in weight_shapes(model.config)}
    for sl, qt in qw.tensors.items():
        weights[sl.tensor][sl.start:sl.stop] = qt.dequantized()
    return Model(model.config, weights, "dequantized")


def test_installed_weights_equal_a_model_of_the_dequantized_weights(model):
    qw = quantize_weights(model, "default=q4_0,k=q8_0,v=none,down@1=turbo3:group=64,output=q8_0", progress=False)
    before = model.logits(tokens())
    with qw.installed(model):
        quantized = model.logits(tokens())
    expected = dequantized_model(model, qw).logits(tokens())
    assert torch.allclose(quantized, expected, atol=FLOAT32_MATMUL, rtol=0)
    assert (quantized - before).abs().max() > 100 * FLOAT32_MATMUL  # the weights did change
    assert torch.equal(model.logits(tokens()), before)  # and the model is restored
    wqkv = qw._built[2]["layers.0.wqkv"].effective_weight()
    k_rows = model.transformer.w["layers_0_wqkv"][128:192]
    assert torch.equal(wqkv[128:192], formats.get("q8_0").roundtrip(k_rows))
    assert torch.equal(wqkv[192:], model.transformer.w["layers_0_wqkv"][192:])  # v=none stays dense


@pytest.mark.parametrize("matmul, tolerance", [("dequant_matmul", FLOAT32_MATMUL), ("fused_fma", FLOAT32_MATMUL),
                                               # 8-bit activation blocks: ~0.4% of each block's max per matmul
                                               ("int8_dot", 0.05)])
def test_matmul_variants_agree_with_the_dense_path(model, matmul, tolerance):
    qw = quantize_weights(model, "default=q4_0,k=q8_0,gate=q4_1", progress=False)
    with qw.installed(model, "dense"):
        dense = model.logits(tokens())
    with qw.installed(model, matmul):
        got = model.logits(tokens())
    assert (got - dense).abs().max() <= tolerance * max(1.0, float(dense.abs().max()))


def test_unsupported_kernel_format_is_a_clear_error(model):
    qw = quantize_weights(model, "q4_0_rot", progress=False)
    with pytest.raises(ValueError, match="does not support weights in q4_0_rot"):
        with qw.installed(model, "fused_fma"):
            pass
    assert not model.transformer.linear_overrides
    with pytest.raises(UserError, match="unknown matmul"):
        with qw.installed(model, "cublas"):
            pass


def test_gptq_on_a_tiny_model_uses_the_calibration_hessians(model):
    calib = Calibration(torch.randint(CFG.vocab_size, (4, 48), generator=torch.Generator().manual_seed(2)), "random")
    hessians = {}
    qw = quantize_weights(model, "q4_0,output=q8_0", "gptq", calibration=calib, hessians=hessians, progress=False)
    assert set(hessians) == {"tok_embeddings"} | {f"layers.{i}.{n}" for i in range(2)
                                                  for n in ("wqkv", "wo", "w13", "w2")}
    assert qw.variant == "gptq:damp=0.01:calib=random:4x48"
    assert qw.summary()["embeddings_included"] is True
    # on the calibration tokens, gptq's layer outputs are closer to the unquantized ones than rtn's
    rtn = quantize_weights(model, "q4_0,output=q8_0", progress=False)
    ref = torch.cat([model.logits(calib.tokens[i:i + 1]) for i in range(4)])

    def err(q):
        with q.installed(model):
            return float((torch.cat([model.logits(calib.tokens[i:i + 1]) for i in range(4)]) - ref).norm())
    assert err(qw) < err(rtn)


def test_quality_table_rows_carry_the_weights(tmp_path):
    cfg = tiny_hf_config()
    write_gguf(tmp_path / "tiny.gguf", cfg, random_hf_weights(cfg))
    (tmp_path / "corpus.txt").write_text("The quick brown fox jumps over the lazy dog again and again. " * 4)
    tiny = load_model(tmp_path / "tiny.gguf")
    qw = quantize_weights(tiny, "q4_0,k=q8_0", progress=False)
    rows = quality_table(tiny, ["f16"], tmp_path / "corpus.txt", ctx=16, chunks=2, cache_root=tmp_path,
                         progress=False, weights=[None, qw])
    plain, weighted = rows
    assert "weights" not in plain and weighted["weights"] == "default=q4_0,k=q8_0" and weighted["method"] == "rtn"
    assert weighted["kld_mean"] > 10 * plain["kld_mean"]
    assert weighted["weights_bpw"] == pytest.approx(qw.summary()["bits_per_weight"])
    records = [r for r in quality_records(rows) if r["metric"] in ("kld_mean", "weights_bpw")]
    assert {(r["format"], r["variant"], r["metric"]) for r in records} == {
        ("f16", "dequant_sdpa", "kld_mean"), ("w:default=q4_0,k=q8_0|kv:f16", "rtn+dequant_sdpa", "kld_mean"),
        ("w:default=q4_0,k=q8_0|kv:f16", "rtn+dequant_sdpa", "weights_bpw")}


def test_calibration_takes_the_end_of_the_corpus(tmp_path):
    from quantbench.harness.quality.corpus import Corpus
    from quantbench.harness.weights import calibration_tokens

    cfg = tiny_hf_config()
    write_gguf(tmp_path / "tiny.gguf", cfg, random_hf_weights(cfg))
    tiny = load_model(tmp_path / "tiny.gguf")
    corpus = Corpus("fox", "The quick brown fox jumps over the lazy dog. " * 6)
    ids = tiny.tokenize(corpus.text)
    calib = calibration_tokens(tiny, corpus, n_seq=3, seq_len=8)
    assert calib.tokens.shape == (3, 8) and calib.label == "fox:3x8"
    assert calib.tokens[:, 1:].reshape(-1).tolist() == [t for i, t in enumerate(ids[-24:]) if i % 8]
    with pytest.raises(UserError, match="too few"):
        calibration_tokens(tiny, corpus, n_seq=3, seq_len=8, reserved_tokens=len(ids) - 20)


def test_sensitivity_ranks_roles_by_kld_per_bit(tmp_path):
    from quantbench.harness.weights.sensitivity import sensitivity_table

    cfg = tiny_hf_config()
    write_gguf(tmp_path / "tiny.gguf", cfg, random_hf_weights(cfg))
    (tmp_path / "corpus.txt").write_text("The quick brown fox jumps over the lazy dog again and again. " * 4)
    tiny = load_model(tmp_path / "tiny.gguf")
    common = dict(corpus=tmp_path / "corpus.txt", ctx=16, chunks=1, progress=False)
    rows, quality_rows = sensitivity_table(tiny, "q4_0", None, ["k", "down"], **common)
    assert [r["rank"] for r in rows] == [1, 2] and len(quality_rows) == 2
    assert rows[0]["kld_per_bit"] >= rows[1]["kld_per_bit"]
    down = next(r for r in rows if r["role"] == "down")
    assert (down["weights"] == "down=q4_0"
            and down["delta_bpw"] == pytest.approx((16 - 4.5) * down["share %"] / 100, rel=1e-3))
    rows, quality_rows = sensitivity_table(tiny, "q4_0", "q8_0", ["k", "down"], **common)
    baseline = quality_rows[0]["kld_mean"]
    for r in rows:
        assert r["recovery"] == pytest.approx(baseline - r["kld_mean"])
        assert r["weights"] == f"k=q4_0,down=q4_0,{r['role']}=q8_0"
    with pytest.raises(UserError, match="unknown role"):
        sensitivity_table(tiny, "q4_0", None, ["kk"], **common)


def test_throughput_rows_with_quantized_weights(model):
    from types import SimpleNamespace

    from quantbench.harness import throughput
    from quantbench.harness.commands.weight_options import with_weight_variants

    args = SimpleNamespace(weights="q4_0,k=q8_0", matmul="dequant_matmul,fused_fma")
    rows = with_weight_variants(model, args, lambda: throughput.run_throughput(model, [None], [8], [2], [0], 1))
    assert [(r.matmul, r.op) for r in rows] == [("dequant_matmul", "prefill"), ("dequant_matmul", "decode"),
                                                ("fused_fma", "prefill"), ("fused_fma", "decode")]
    assert not model.transformer.linear_overrides  # restored after each variant
    record = throughput.to_records(rows[3:], "cpu")[0]
    assert record["format"] == "w:default=q4_0,k=q8_0|kv:none" and record["variant"] == "fused_fma+dequant_sdpa"
    with pytest.raises(UserError, match="--matmul"):
        with_weight_variants(model, SimpleNamespace(weights="q4_0", matmul="cublas"), list)
