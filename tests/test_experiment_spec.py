"""Experiment files: the schema, its errors, and the committed experiments of suites/experiments."""
import pytest

from quantbench.harness.experiments import ExperimentError, find, load_experiment, parse_experiment

VALID = """
id = "T-1"
title = "t"
hypothesis = "h"
kind = "format"
metric = "nmse"
baseline = "q8_0"
variants = ["q4_0", {label = "four", format = "q4_1"}]
expect = {q4_0 = "worse", four = "worse"}
margin = 0.1
[run]
rows = 64
dim = 32
"""


def write(tmp_path, text, name="e.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_valid_file_parses_into_arms_and_expectations(tmp_path):
    e = load_experiment(write(tmp_path, VALID))
    assert e.id == "T-1" and e.kind == "format" and e.margin == 0.1
    assert [a.label for a in e.arms()] == ["q8_0", "q4_0", "four"]
    assert e.variants[1].settings == {"format": "q4_1"}
    assert e.expect == {"q4_0": "worse", "four": "worse"} and e.run == {"rows": 64, "dim": 32}


def test_a_single_expectation_applies_to_every_variant_and_no_variants_is_a_baseline():
    base = {"id": "B", "title": "t", "hypothesis": "h", "kind": "format", "metric": "nmse", "baseline": "q8_0"}
    assert parse_experiment(base).is_baseline
    e = parse_experiment({**base, "variants": ["q4_0", "q4_1"], "expect": "worse"})
    assert e.expect == {"q4_0": "worse", "q4_1": "worse"}


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, "unknown key(s) colour"),
    ({"kind": "speed"}, "unknown kind 'speed'"),
    ({"metric": "time"}, "format experiments compare"),
    ({"expect": "faster"}, "must be one of better, worse, same"),
    ({"expect": {"q4_0": "worse"}}, "missing four"),
    ({"margin": -1}, "margin must be a number above 0"),
    ({"variants": ["q4_0", "q4_0"], "expect": "worse"}, "arm labels repeat"),
    ({"variants": [{"label": "x", "rows": 3}], "expect": "worse"}, "a format arm is a format spec"),
    ({"run": {"rows": "many"}}, "run setting rows = 'many': expected a int"),
    ({"run": {"ctx": 512}}, "unknown run setting(s) ctx"),
    ({"variants": ["q4_0"], "expect": None}, "expect is missing"),
])
def test_schema_errors_name_the_problem(change, message):
    import tomllib

    data = {**tomllib.loads(VALID), **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ExperimentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_experiment(data)


def test_missing_keys_long_files_and_broken_toml_are_refused(tmp_path):
    with pytest.raises(ExperimentError, match="missing key.*baseline"):
        load_experiment(write(tmp_path, VALID.replace('baseline = "q8_0"\n', "")))
    with pytest.raises(ExperimentError, match="at most 30"):
        load_experiment(write(tmp_path, VALID + "\n".join(f"# {i}" for i in range(30))))
    with pytest.raises(ExperimentError, match="not valid TOML"):
        load_experiment(write(tmp_path, "id = ["))
    with pytest.raises(ExperimentError, match="not found"):
        load_experiment(tmp_path / "absent.toml")


def test_a_folder_with_one_id_twice_is_refused(tmp_path):
    write(tmp_path, VALID, "a.toml")
    write(tmp_path, VALID, "b.toml")
    with pytest.raises(ExperimentError, match="T-1 is in both"):
        find(tmp_path)


def test_the_committed_experiments_parse_and_name_their_seed():
    experiments = find()
    assert len(experiments) >= 15
    assert all(e.source for e in experiments)
    assert sum(e.source.startswith("seed 00") for e in experiments) >= 15
    kinds = {e.kind for e in experiments}
    assert {"kv", "weights", "kernel", "format"} <= kinds
