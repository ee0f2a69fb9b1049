"""The landscape page (harness/landscape_html.py): one self-contained HTML file, checked as text and in
headless Chromium with the network off."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from browser import ChromiumNotFound, render, skip_without_chromium

from quantbench.harness.errors import UserError
from quantbench.harness.landscape_html import nice_ticks, pareto_frontier, render_landscape_html

HOSTILE = '<script>document.body.setAttribute("data-pwned", "1")</script>'


def experiment(id_, result="success", confidence=3, **extra) -> dict:
    return {"id": id_, "title": f"{id_} title", "hypothesis": f"{id_} holds", "result": result,
            "confidence": confidence, "reproductions": "2/2 agree", "metrics": "kld_mean 0.012 @ 4.5 b",
            "kind": "kv_quality", "source": "seed", **extra}


TABLE = [
    experiment("kv-turbo3", title=f"turbo3 beats q4_0 {HOSTILE}"),
    experiment("kv-sparse", "inconclusive", 2),
    experiment("gemv-fma", "failure", 5, source='issue "12" & <b>'),
    experiment("gpu-decode", "not runnable here: no CUDA device", None),
    experiment("later", "not run", None),
]
PARETO = [
    {"kv": "f16", "bits_per_value": 16.0, "kld_mean": 5e-7, "kld_mean_err": 1e-7, "case": "chunks=8"},
    {"kv": "q8_0", "bits_per_value": 8.5, "kld_mean": 2e-4, "kld_mean_err": 1e-5, "case": "chunks=8"},
    {"kv": "q4_0", "bits_per_value": 4.5, "kld_mean": 0.012, "kld_mean_err": 5e-4, "case": "chunks=8"},
    {"kv": "turbo3", "bits_per_value": 3.5, "kld_mean": 0.02, "kld_mean_err": 1e-3, "case": "chunks=8"},
    {"kv": "k=q8_0,v=<turbo3>", "bits_per_value": 6.5, "kld_mean": 0.015, "case": "chunks=8"},
    {"kv": "f16", "bits_per_value": 16.0, "kld_mean": 0.0, "case": "chunks=1"},
    {"kv": "q4_0", "bits_per_value": 4.5, "kld_mean": 0.013, "case": "chunks=1"},
]
ARMS = [
    {"experiment": "kv-turbo3", "variant": "turbo3", "metric": "kld_mean", "rel_diff": -0.25, "ci_low": -0.3,
     "ci_high": -0.19, "expect": "better", "margin": 0.05, "outcome": "better", "direction": "lower"},
    {"experiment": "kv-turbo3", "variant": "turbo3:rotate=0", "metric": "kld_mean", "rel_diff": 0.8, "ci_low": 0.6,
     "ci_high": 1.1, "expect": "worse", "margin": 0.05, "outcome": "worse", "direction": "lower"},
    {"experiment": "gemv-fma", "variant": "fused_fma", "metric": "decode_tok_s", "rel_diff": 0.01, "ci_low": -0.01,
     "ci_high": 0.02, "expect": "same", "margin": 0.03, "outcome": "same", "direction": "higher"},
]


class Outline(HTMLParser):
    """The counts a test checks: rows of the experiment table's body, charts by class, elements by tag."""

    def __init__(self, text: str):
        super().__init__()
        self.table_rows = 0
        self.charts: dict[str, int] = {}
        self.tags: dict[str, int] = {}
        self._in_body = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self._in_body = self._in_body or tag == "tbody"
        if tag == "tr" and self._in_body:
            self.table_rows += 1
        if tag == "svg":
            kind = attributes.get("class", "").replace("chart", "").strip()
            self.charts[kind] = self.charts.get(kind, 0) + 1

    def handle_endtag(self, tag):
        self._in_body = self._in_body and tag != "tbody"


def test_every_input_string_is_escaped():
    page = render_landscape_html(TABLE, PARETO, ARMS, title=f"landscape {HOSTILE}", note="from <results> & co")
    assert page.count("<script>") == 1  # the page's own sorting script, nothing from the inputs
    assert "turbo3 beats q4_0 &lt;script&gt;document.body.setAttribute(&quot;data-pwned&quot;" in page
    assert "<title>landscape &lt;script&gt;" in page
    assert "issue &quot;12&quot; &amp; &lt;b&gt;" in page and "from &lt;results&gt; &amp; co" in page
    assert "k=q8_0,v=&lt;turbo3&gt;" in page


def test_the_page_loads_nothing():
    page = render_landscape_html(TABLE, PARETO, ARMS)
    assert not re.search(r"""\b(src|href)\s*=""", page)
    assert "@import" not in page and "url(" not in page


def test_empty_plots_say_there_is_nothing_to_plot():
    page = render_landscape_html(TABLE, [], [])
    assert "Nothing to plot: no KV policy" in page and "Nothing to plot: no experiment has variants" in page
    assert "<svg" not in page
    assert Outline(page).table_rows == len(TABLE)
    assert "No experiments." in render_landscape_html([], [], [])


@pytest.mark.parametrize("table, pareto, arms, message", [
    ([{"id": "x"}], [], [], "table row 0 has no 'title'"),
    ([experiment("x", confidence=7)], [], [], "table row 0 ('x'): confidence 7 is not an integer from 1 to 5"),
    ([], [{**PARETO[0], "kld_mean": "small"}], [], "pareto row 0: kld_mean 'small' is not a number"),
    ([], [], [{k: v for k, v in ARMS[0].items() if k != "margin"}], "arms row 0 has no 'margin'"),
    ([], "not a list", [], "pareto must be a list of dicts"),
])
def test_bad_input_is_named(table, pareto, arms, message):
    with pytest.raises(UserError, match=re.escape(message)):
        render_landscape_html(table, pareto, arms)


def test_non_finite_points_are_left_out_and_said():
    page = render_landscape_html([], [*PARETO[:2], {**PARETO[2], "kld_mean": float("nan")}],
                                 [*ARMS[:1], {**ARMS[1], "ci_high": float("inf")}])
    assert "1 point(s) with a non-finite value not drawn" in page
    assert "1 variant(s) with a non-finite difference not drawn" in page


def test_pareto_frontier_keeps_what_nothing_beats():
    points = [{"kv": kv, "bits_per_value": bits, "kld_mean": kld} for kv, bits, kld in
              [("a", 4.5, 0.012), ("b", 3.5, 0.02), ("c", 4.5, 0.007), ("d", 6.5, 0.015), ("e", 16, 5e-7)]]
    assert [p["kv"] for p in pareto_frontier(points)] == ["b", "c", "e"]


def test_nice_ticks():
    assert nice_ticks(1.75, 16.5, 8) == [2, 4, 6, 8, 10, 12, 14, 16]
    assert nice_ticks(-0.33, 1.2, 8) == [-0.2, 0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2]


@pytest.mark.browser
@skip_without_chromium
def test_the_page_renders_offline(tmp_path):
    path = tmp_path / "landscape.html"
    path.write_text(render_landscape_html(TABLE, PARETO, ARMS, title=f"landscape {HOSTILE}"), encoding="utf-8")
    page = render(path)
    assert page.page_requests == [] and page.errors == [], (page.page_requests, page.console)
    assert 'data-pwned="1"' not in page.dom  # the hostile title stayed text
    outline = Outline(page.dom)
    assert outline.table_rows == len(TABLE)
    assert outline.charts == {"pareto": 2, "forest": 2}  # one per case, one per experiment with arms
    assert outline.tags["circle"] == len(PARETO) + len(ARMS)
    assert "case chunks=8" in page.dom and "f16 (KLD ≤ 0)" in page.dom


@pytest.mark.browser
@skip_without_chromium
def test_the_browser_log_sees_a_network_request(tmp_path):
    """The check above can fail: a page that asks for a remote file shows it in the log."""
    path = tmp_path / "remote.html"
    path.write_text('<html><body><img src="https://example.invalid/x.png"></body></html>')
    assert render(path).page_requests == ["https://example.invalid/x.png"]


def test_without_chromium_the_helper_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ChromiumNotFound, match=r"chromium not found .* apt-get install -y chromium"):
        render(tmp_path / "page.html")
