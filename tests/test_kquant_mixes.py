"""llama.cpp's k-quant mixes as weights specs: the types llama-quantize gives each tensor."""
import pytest

from quantbench.harness.model import ModelConfig
from quantbench.harness.weights import WeightSpec, bits_summary
from quantbench.harness.weights.kquant_mixes import layer_ranges, mix_spec, split_mix, use_more_bits

SMOLLM2 = ModelConfig(n_layers=30, n_heads=9, n_kv_heads=3, head_dim=64, dim=576, hidden_dim=1536,
                      vocab_size=49152, max_seq_len=8192)
LLAMA3_8B = ModelConfig(n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128, dim=4096, hidden_dim=14336,
                        vocab_size=128256, max_seq_len=8192, tie_embeddings=False)


def types(spec: str, config) -> dict[str, str]:
    return {sl.label: fmt.spec for sl, fmt in WeightSpec(spec).assign(config)}


def test_use_more_bits_layers_of_a_30_layer_model():
    assert [i for i in range(30) if use_more_bits(i, 30)] == [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]


def test_q4_k_m_on_llama_3_8b():
    t = types("q4_k_m", LLAMA3_8B)
    assert t["q@7"] == t["k@7"] == t["o@7"] == t["gate@7"] == t["up@7"] == t["v@7"] == t["down@7"] == "q4_k"
    assert t["v@0"] == t["v@3"] == t["v@6"] == t["v@31"] == t["down@27"] == "q6_k"
    assert t["v@4"] == t["down@5"] == "q4_k"
    assert t["embeddings"] == "q4_k" and t["output"] == "q6_k"


@pytest.mark.parametrize("mix, bpw", [("q4_k_m", 4.89), ("q5_k_m", 5.70), ("q3_k_m", 4.00)])
def test_bits_per_weight_on_llama_3_8b_are_llama_cpps(mix, bpw):
    """Meta-Llama-3-8B's files: 4.92 GB (Q4_K_M), 5.73 GB (Q5_K_M), 4.02 GB (Q3_K_M) for 8.03 B weights."""
    assert bits_summary(WeightSpec(mix).assign(LLAMA3_8B))["bits_per_weight"] == pytest.approx(bpw, abs=0.02)


def test_q3_k_m_rules():
    t = types("q3_k_m", LLAMA3_8B)
    assert t["q@9"] == t["gate@9"] == "q3_k" and t["o@9"] == t["v@9"] == t["down@9"] == "q4_k"
    assert t["v@0"] == t["v@1"] == t["down@0"] == t["down@1"] == "q5_k" and t["down@2"] == "q4_k"
    assert t["output"] == "q6_k" and t["embeddings"] == "q3_k"


def test_rows_that_do_not_fit_256_fall_back_as_llama_quantize_does():
    """SmolLM2-135M is 576 wide: only ffn_down (1536) holds super-blocks."""
    t = types("q4_k_m", SMOLLM2)
    assert t["q@4"] == t["o@4"] == t["up@4"] == t["v@4"] == "q5_0"
    assert t["v@5"] == "q8_0" and t["down@5"] == "q6_k" and t["down@4"] == "q4_k"
    assert t["embeddings"] == "q8_0" and "output" not in t  # tied: the output's type
    assert set(types("q5_k_m", SMOLLM2).values()) == {"q5_1", "q5_k", "q6_k", "q8_0"}
    q3 = types("q3_k_m", SMOLLM2)
    assert (q3["q@9"], q3["v@0"], q3["v@9"], q3["o@9"], q3["down@0"]) == ("q4_0", "q5_1", "q5_0", "q5_0", "q5_k")


def test_later_items_override_the_mix_and_the_text_keeps_the_name():
    spec = WeightSpec("q4_k_m,down@0=q8_0,embeddings=none")
    assert spec.text == "q4_k_m,down@0=q8_0,embeddings=none"
    t = {sl.label: fmt.spec for sl, fmt in spec.assign(SMOLLM2)}
    assert t["down@0"] == "q8_0" and "embeddings" not in t and t["down@5"] == "q6_k"
    assert WeightSpec("q5_k_m").text == "q5_k_m"


def test_split_mix_and_layer_ranges():
    assert split_mix("q4_k_m , k=q8_0") == ("q4_k_m", "k=q8_0")
    assert split_mix("q4_k,k=q8_0") == (None, "q4_k,k=q8_0")
    assert layer_ranges([5, 0, 1, 2, 8, 9]) == "0-2+5+8-9"
    assert mix_spec("q4_k_m", SMOLLM2).startswith("q=q5_0,k=q5_0,v=q5_0,v@0-2+5+")
