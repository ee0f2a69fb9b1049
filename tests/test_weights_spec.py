"""The weights spec grammar: roles, layer ranges, format options, bits per weight, clear errors."""
import pytest

from quantbench.harness.errors import UserError
from quantbench.harness.model import ModelConfig
from quantbench.harness.weights import WeightSpec, WeightSpecError, bits_summary, role_slices
from quantbench.kernels import formats
from quantbench.kernels.formats import FormatError

CFG = ModelConfig(n_layers=4, n_heads=4, n_kv_heads=2, head_dim=32, dim=128, hidden_dim=256, vocab_size=300,
                  max_seq_len=64)


def formats_by_label(spec: str, config=CFG) -> dict[str, str]:
    return {sl.label: fmt.spec for sl, fmt in WeightSpec(spec).assign(config)}


def test_role_slices_cover_every_matrix_row_once():
    rows: dict[str, list[tuple[int, int]]] = {}
    for sl in role_slices(CFG):
        rows.setdefault(sl.tensor, []).append((sl.start, sl.stop))
    assert rows["layers.0.wqkv"] == [(0, 128), (128, 192), (192, 256)]
    assert rows["layers.0.w13"] == [(0, 256), (256, 512)]
    assert rows["layers.3.w2"] == [(0, 128)] and rows["tok_embeddings"] == [(0, 300)]
    assert "output" not in rows  # tied


def test_default_roles_override_and_layer_ranges():
    got = formats_by_label("default=q4_0,k=q8_0,down@0-1+3=q8_0")
    assert got["q@0"] == "q4_0" and got["k@2"] == "q8_0" and got["v@2"] == "q4_0"
    assert [got[f"down@{i}"] for i in range(4)] == ["q8_0", "q8_0", "q4_0", "q8_0"]
    assert "embeddings" not in got  # default covers the per-layer roles only
    assert len(got) == 7 * 4


def test_later_items_win_and_none_unquantizes():
    got = formats_by_label("ffn=q8_0,gate@2=none,q4_0")
    assert got["gate@2"] == "q4_0"  # the bare format (default=) comes last and wins
    got = formats_by_label("q4_0,attn@1=none")
    assert not any(label.endswith("@1") and label[0] in "qkvo" for label in got) and got["down@1"] == "q4_0"


def test_format_options_pass_through_and_tied_embeddings():
    got = formats_by_label("turbo3:group=64,output=q8_0")
    assert got["q@0"] == "turbo3:group=64"
    assert got["embeddings"] == "q8_0"  # tied: output names the embedding table
    assert WeightSpec("turbo3:group=64,k=q8_0").text == "default=turbo3:group=64,k=q8_0"


def test_bits_per_weight_by_element_count():
    assigned = WeightSpec("default=q4_0,k=q8_0").assign(CFG)
    summary = bits_summary(assigned)
    k = sum(sl.numel for sl, _ in assigned if sl.role == "k")
    total = sum(sl.numel for sl, _ in assigned)
    expected = (formats.get("q8_0").bits_per_value * k + formats.get("q4_0").bits_per_value * (total - k)) / total
    assert summary["bits_per_weight"] == pytest.approx(expected, rel=1e-12)
    assert summary["quantized_weights"] == total and summary["embeddings_included"] is False
    assert bits_summary(WeightSpec("q4_0,embeddings=q8_0").assign(CFG))["embeddings_included"] is True


@pytest.mark.parametrize("spec, message", [
    ("default=q4_0,kk=q8_0", "unknown role 'kk'"),
    ("down@0-9=q8_0", "layer 4 does not exist"),
    ("down@3-1=q8_0", "empty or negative"),
    ("down@x=q8_0", "is not N or A-B"),
    ("default=q9_9", "unknown format"),
    ("k=", "has no format"),
    ("embeddings@0=q8_0", "takes no @layers"),
    ("embeddings=q8_0,output=q4_0", "tied tensor"),
    ("bogus", "neither target=format nor a format"),
    ("", "non-empty"),
])
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(UserError, match=message):
        WeightSpec(spec).assign(CFG)


def test_incompatible_shape_is_a_format_error():
    odd = ModelConfig(n_layers=1, n_heads=2, n_kv_heads=1, head_dim=48, dim=96, hidden_dim=160, vocab_size=50,
                      max_seq_len=16)
    with pytest.raises(FormatError, match=r"down@0 .*input dimension 160.*not a multiple of the group size 64"):
        WeightSpec("down=turbo3:group=64").assign(odd)
    with pytest.raises(FormatError, match="q@0 .*input dimension 96"):
        WeightSpec("q=turbo3").assign(odd)  # group = the whole row: 96 is not a power of two
    assert issubclass(WeightSpecError, UserError)
