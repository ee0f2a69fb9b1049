"""`quantbench search` (harness/kv_search.py) end to end on a tiny GGUF model, and the named policies
(harness/model/named_policies.py)."""
import json

import pytest
from model_helpers import random_hf_weights, tiny_hf_config, write_gguf

from quantbench.harness.cli import main
from quantbench.harness.kv_search import SearchSpace, within_budget
from quantbench.harness.model import ModelConfig, parse_kv_policy
from quantbench.harness.model.kv_policy import KVPolicyError
from quantbench.harness.model.named_policies import NAMED_POLICIES

TEXT = ("The quick brown fox jumps over the lazy dog; then the dog sleeps, the fox runs home "
        "and the hens are safe for another night. ") * 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    cfg = tiny_hf_config()
    write_gguf(folder / "tiny.gguf", cfg, random_hf_weights(cfg))
    (folder / "corpus.txt").write_text(TEXT)
    return folder


CONFIG = ModelConfig(n_layers=2, n_heads=2, n_kv_heads=1, head_dim=32, dim=64, hidden_dim=64, vocab_size=50,
                     max_seq_len=64, name="tiny")
NO_EXTRAS = ("--k-only", "none", "--techniques", "none")


def test_the_space_keeps_what_fits_the_budget_at_the_context():
    space = SearchSpace(("q4_0", "q8_0"), (4, 8), "f16", k_only=(), techniques=())
    policies = space.policies(n_layers=2)
    assert len(policies) == 4 * 3
    fitting = within_budget(policies, 5.0, CONFIG, ctx=16)
    assert {p.spec for p in fitting} == {"q4_0"}  # a window of 4 in f16 at ctx 16 is 7.375 bits
    assert {p.spec for p in within_budget(policies, 5.0, CONFIG, ctx=512)} == {
        "q4_0", "q4_0,window4=f16", "q4_0,window8=f16"}


def test_per_channel_keys_take_a_window_on_values_only_and_techniques_are_added_once():
    space = SearchSpace(("q4_0",), (4,), "f16", k_only=("kivi2",), techniques=("k.equalize=auto", "sinks2=q8_0"))
    specs = [p.spec for p in space.policies(n_layers=2)]
    assert specs == ["q4_0", "q4_0,window4=f16", "k=kivi2,v=q4_0", "k=kivi2,v=q4_0,v.window4=f16"]
    base = parse_kv_policy("q4_0,sinks2=q8_0", n_layers=2)
    assert [p.spec for p in space.with_techniques([base], n_layers=2)] == ["q4_0,sinks2=q8_0,k.equalize=auto"]


def test_trained_tables_are_counted_once_for_the_cache():
    plain = parse_kv_policy("k=turbo3_tcq,v=turbo2_tcq", n_layers=30)
    trained = parse_kv_policy("k=turbo3_tcq:code=smollm2-tcq3-k,v=turbo2_tcq", n_layers=30)
    assert plain.shared_tables(512) == {}
    assert trained.shared_tables(512) == {"code=smollm2-tcq3-k": 512 * 32}  # 2^9 float32 reconstructions
    extra = trained.bits_per_value(64, 512, kv_heads=3) - plain.bits_per_value(64, 512, kv_heads=3)
    assert extra == pytest.approx(512 * 32 / (60 * 3 * 64 * 512))
    assert trained.bits_per_value(64, 512) - plain.bits_per_value(64, 512) == pytest.approx(3 * extra)
    levels = parse_kv_policy("k=turbo3:levels=smollm2-k3,v=turbo3:levels=smollm2-k3,window8=turbo3:levels=smollm2-v3",
                             n_layers=30)
    assert levels.shared_tables(512) == {"levels=smollm2-k3": 256, "levels=smollm2-v3": 256}
    with pytest.raises(KVPolicyError, match="trained tables .* give a positive ctx"):
        trained.bits_per_value(64)


def test_search_measures_the_front_and_the_baseline(tiny, tmp_path, capsys):
    html, results = tmp_path / "front.html", tmp_path / "search.jsonl"
    code = main(["search", "-m", str(tiny / "tiny.gguf"), "--corpus", str(tiny / "corpus.txt"), "--budget", "8",
                 "--ctx", "16", "--chunks", "2", "--screen-chunks", "1", "--ladder", "q4_0,q8_0",
                 "--windows", "2", "--window-format", "f16", "--baseline", "q8_0", "--html", str(html),
                 "--results", str(results), *NO_EXTRAS])
    out = capsys.readouterr().out
    assert code == 0
    assert "screen: " in out and "best within 8.0 bits per value:" in out
    records = [json.loads(line) for line in results.read_text().splitlines()]
    measured = {r["format"] for r in records if r["metric"] == "kld_mean"}
    assert "q8_0" in measured and measured <= {"q4_0", "k=q4_0,v=q8_0", "k=q8_0,v=q4_0", "q8_0",
                                               "q4_0,window2=f16", "k=q4_0,v=q8_0,window2=f16",
                                               "k=q8_0,v=q4_0,window2=f16"}
    bits = {r["format"]: r["value"] for r in records if r["metric"] == "bits_per_value"}
    assert all(value <= 8 for spec, value in bits.items() if spec != "q8_0") and bits["q8_0"] == 8.5
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "Experiments" not in page


def test_search_screens_per_channel_keys_and_adds_techniques_to_the_front(tiny, capsys):
    code = main(["search", "-m", str(tiny / "tiny.gguf"), "--corpus", str(tiny / "corpus.txt"), "--budget", "8",
                 "--ctx", "16", "--chunks", "1", "--screen-chunks", "1", "--ladder", "q4_0,q8_0", "--windows", "2",
                 "--window-format", "f16", "--k-only", "kivi2:group=4", "--techniques", "k.equalize=auto",
                 "--baseline", "q8_0", "--no-store"])
    captured = capsys.readouterr()
    assert code == 0
    screen = captured.out.split("front and baseline")[0]
    assert "k=kivi2:group=4,v=q4_0,v.window2=f16" in screen and ",k.equalize=auto" in screen


def test_search_names_a_bad_technique_before_loading_the_model(capsys):
    code = main(["search", "-m", "no-such-model.gguf", "--budget", "4", "--techniques", "k.first2=q8_0"])
    assert code == 2 and "'k.first2=q8_0' is not one technique item" in capsys.readouterr().err


def test_search_refuses_an_empty_space(tiny, capsys):
    code = main(["search", "-m", str(tiny / "tiny.gguf"), "--corpus", str(tiny / "corpus.txt"), "--budget", "1",
                 "--ctx", "16", "--chunks", "1", "--ladder", "q4_0", "--windows", "none", "--no-store", *NO_EXTRAS])
    assert code == 2 and "no policy of the space fits 1.0 bits" in capsys.readouterr().err


def test_named_policies_stand_for_their_spec():
    for name, named in NAMED_POLICIES.items():
        assert parse_kv_policy(name, n_layers=30) == parse_kv_policy(named.spec, n_layers=30)
        assert named.source
    assert parse_kv_policy("best:3.5", n_layers=30).bits_per_value(64, 512) <= 3.5


def test_per_layer_allocation_stays_within_the_budget(tiny, tmp_path, capsys):
    results = tmp_path / "search.jsonl"
    code = main(["search", "-m", str(tiny / "tiny.gguf"), "--corpus", str(tiny / "corpus.txt"), "--budget", "6.5",
                 "--ctx", "16", "--chunks", "2", "--screen-chunks", "1", "--ladder", "q4_0,q8_0", "--windows", "none",
                 "--per-layer", "--baseline", "q8_0", "--results", str(results), *NO_EXTRAS])
    assert code == 0
    assert "quality: 5 rows x 1 chunks" in capsys.readouterr().err  # the start and 2 layers x 2 sides upgraded
    records = [json.loads(line) for line in results.read_text().splitlines()]
    bits = {r["format"]: r["value"] for r in records if r["metric"] == "bits_per_value"}
    assert all(bits[spec] <= 6.5 for spec in bits if spec != "q8_0")


def test_greedy_allocation_follows_the_measured_gains(monkeypatch):
    from quantbench.harness import kv_search
    from quantbench.harness.model import load_model

    model = load_model(config=CONFIG)

    def fake_table(model, policies, *args, **kwargs):  # layer 1's K matters most, then layer 0's V
        value = {(1, "k"): 0.5, (0, "v"): 0.2, (0, "k"): 0.05, (1, "v"): 0.01}
        rows = []
        for p in policies:
            kld = 1.0 - sum(v for (layer, side), v in value.items()
                            if p.format_for(layer, side) != "q4_0")
            rows.append({"kv": p.spec, "kld_mean": kld})
        return rows

    monkeypatch.setattr(kv_search, "quality_table", fake_table)
    # 4 slots at 4.5 bits; each upgrade to q8_0 adds 1 bit to the mean: a budget of 6.5 buys two
    chosen = kv_search.layer_allocation(model, 6.5, 16, 1, ("q4_0", "q8_0"), ())
    assert chosen.format_for(1, "k") == "q8_0" and chosen.format_for(0, "v") == "q8_0"
    assert chosen.format_for(0, "k") == "q4_0" and chosen.format_for(1, "v") == "q4_0"
    assert kv_search.layer_allocation(model, 4.0, 16, 1, ("q4_0", "q8_0"), ()) is None
    free = kv_search.layer_allocation(model, 4.5, 16, 1, ("q4_0", "q4_0_rot"), ())  # same bits: free upgrades
    assert set(free.k_formats + free.v_formats) == {"q4_0_rot"} and free.bits_per_value(32, 16) == 4.5


def test_techniques_are_combined_while_they_join_the_front(monkeypatch):
    from quantbench.harness import kv_search
    from quantbench.harness.model import load_model

    model = load_model(config=CONFIG)
    gains = {"sinks2=q8_0": 0.3, "v.alpha=1.02": 0.2}  # each lowers the KLD; together the most

    def fake_table(model, policies, corpus, ctx, *args, **kwargs):
        rows = []
        for p in policies:
            kld = 1.0 - sum(g for item, g in gains.items() if item in p.spec) - 0.4 * p.spec.startswith("q8_0")
            rows.append({"kv": p.spec, "kld_mean": kld, "bits_per_value": p.bits_per_value(32, ctx, 1)})
        return rows

    monkeypatch.setattr(kv_search, "quality_table", fake_table)
    space = SearchSpace(("q4_0",), (), "f16", k_only=(), techniques=tuple(gains))
    found = kv_search.search(model, 6.0, 16, 2, 1, space, baseline="q8_0", progress=False)
    screened = [row["kv"] for row in found["screen"]]
    assert screened == ["q4_0", "q4_0,sinks2=q8_0", "q4_0,v.alpha=1.02", "q4_0,sinks2=q8_0,v.alpha=1.02"]
    assert found["best"]["kv"] == "q4_0,sinks2=q8_0,v.alpha=1.02"
