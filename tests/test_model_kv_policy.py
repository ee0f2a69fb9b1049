"""KV policy specs: per-layer and per-side formats, canonical strings, bits and bytes per token."""
import pytest

from quantbench.harness.errors import UserError
from quantbench.harness.model import ModelConfig, parse_kv_policy
from quantbench.harness.model.kv_policy import split_policies
from quantbench.kernels import formats
from quantbench.kernels.formats import FormatError

N = 30


def test_uniform_policy_is_the_format_name():
    policy = parse_kv_policy("f16", n_layers=N)
    assert policy.spec == "f16"
    assert all(policy.format_for(i, s) == "f16" for i in range(N) for s in "kv")


def test_asymmetric_k_and_v():
    policy = parse_kv_policy(k="f16", v="bf16", n_layers=N)
    assert policy.spec == "k=f16,v=bf16"
    assert policy.format_for(3, "k") == "f16" and policy.format_for(3, "v") == "bf16"
    assert parse_kv_policy("k=f16,v=bf16", n_layers=N) == policy
    assert parse_kv_policy("bf16", k="f16", n_layers=N) == policy  # k overrides kv's K side


@pytest.mark.parametrize("spec, canonical, special", [
    ("bf16,first4=f16,last4=f16", "bf16,first4=f16,last4=f16", [0, 1, 2, 3, 26, 27, 28, 29]),  # LA-1
    ("bf16,last8=f16", "bf16,last8=f16", list(range(22, 30))),  # LA-2
    ("bf16,layers0-3=f16", "bf16,first4=f16", [0, 1, 2, 3]),
    ("bf16,layer7=f16,layers10-11=f16", "bf16,layer7=f16,layers10-11=f16", [7, 10, 11]),
    ("bf16,layers0-29=f16", "f16", list(range(30))),
])
def test_layer_adaptive(spec, canonical, special):
    policy = parse_kv_policy(spec, n_layers=N)
    assert policy.spec == canonical
    for layer in range(N):
        expected = "f16" if layer in special else "bf16"
        assert policy.format_for(layer, "k") == policy.format_for(layer, "v") == expected
    assert parse_kv_policy(policy.spec, n_layers=N) == policy


def test_one_side_override_round_trips():
    policy = parse_kv_policy("k=bf16,v=bf16,v.last8=f16", n_layers=N)
    assert policy.format_for(29, "v") == "f16" and policy.format_for(29, "k") == "bf16"
    assert parse_kv_policy(policy.spec, n_layers=N) == policy


def test_format_options_are_kept():
    name = next((n for n in formats.names() if "group" in formats.options_of(n)), None)
    if name is None:
        pytest.skip("no registered format with a group option yet")
    policy = parse_kv_policy(f"{name}:group=32,last2=f16", n_layers=4)
    assert policy.format_for(0, "k") == f"{name}:group=32"
    assert parse_kv_policy(policy.spec, n_layers=4) == policy


def test_bits_and_bytes_per_token():
    config = ModelConfig(n_layers=4, n_heads=9, n_kv_heads=3, head_dim=64, dim=576, hidden_dim=1536,
                         vocab_size=100, max_seq_len=64)
    policy = parse_kv_policy("f16,first1=f32", n_layers=4)
    assert policy.bits_per_value(64) == pytest.approx((32 * 2 + 16 * 6) / 8)
    assert policy.kv_bytes_per_token(config) == 3 * 64 * (4 + 4 + 2 * 6)
    if "q8_0" in formats.names():
        q8 = parse_kv_policy("q8_0", n_layers=4)
        assert q8.kv_bytes_per_token(config) == 4 * 2 * 3 * 2 * 34  # 2 blocks of 32 per head: 32 codes + fp16 scale


@pytest.mark.parametrize("kwargs, error", [
    (dict(kv="nosuchformat"), FormatError),
    (dict(kv="f16,first4=nosuch"), FormatError),
    (dict(kv="f16,first40=bf16"), UserError),
    (dict(kv="f16,layers5-3=bf16"), UserError),
    (dict(kv="f16,layers2-30=bf16"), UserError),
    (dict(kv="f16,bf16"), UserError),
    (dict(kv="f16,,bf16"), UserError),
    (dict(kv="first4=f16"), UserError),
    (dict(kv="k=f16"), UserError),
    (dict(k="f16"), UserError),
    (dict(), UserError),
    (dict(kv=""), UserError),
    (dict(k="f16", v="bf16,v.last2=f16"), UserError),
])
def test_bad_specs_are_clear_errors(kwargs, error):
    with pytest.raises(error):
        parse_kv_policy(**kwargs, n_layers=N)


def test_format_for_checks_its_arguments():
    policy = parse_kv_policy("f16", n_layers=2)
    with pytest.raises(UserError):
        policy.format_for(2, "k")
    with pytest.raises(UserError):
        policy.format_for(0, "q")


def test_split_policies():
    assert split_policies("f16,q8_0,turbo3") == ["f16", "q8_0", "turbo3"]
    assert split_policies("f16,turbo3,first4=q8_0,last4=q8_0,k=q8_0,v=turbo3,q4_0") == [
        "f16", "turbo3,first4=q8_0,last4=q8_0", "k=q8_0,v=turbo3", "q4_0"]
    la = "turbo3:group=32,layers0-3=q8_0,v.last2=f16"
    assert split_policies(la) == [la]
    assert split_policies("f16;k=q8_0,v=f16,k.first1=f16") == ["f16", "k=q8_0,v=f16,k.first1=f16"]
