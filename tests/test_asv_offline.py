"""`quantbench dashboard`: asv's published pages pointed at local copies of their CDN scripts and styles.

The browser tests publish a real (tiny) asv project, rewrite it, and open it in headless Chromium with
every host name unresolvable: the dashboard's own scripts must have run (they build the benchmark grid,
the graph and the list from the published JSON) and the page must have asked the network for nothing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from browser import render, skip_without_chromium

from quantbench.harness import asv_offline
from quantbench.harness.asv_offline import make_offline, plan_offline, rewrite_page
from quantbench.harness.cli import main
from quantbench.harness.errors import UserError

ASV_CONF = """{"version": 1, "project": "tiny", "repo": ".", "branches": ["main"], "dvcs": "git",
 "environment_type": "existing", "pythons": ["same"], "benchmark_dir": "benchmarks",
 "results_dir": "results", "html_dir": "html"}"""
BENCHMARK = "def time_sum():\n    sum(range(100))\n"
JQUERY_CDN = ('<script src="https://code.jquery.com/jquery-3.3.1.min.js" integrity="sha256-abc" '
              'crossorigin="anonymous" onerror="js_load_failure()"></script>')


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """asv publish's html folder for a throwaway git repo with one benchmark, run once for the module."""
    project = tmp_path_factory.mktemp("asv-project")
    (project / "benchmarks").mkdir()
    (project / "benchmarks" / "__init__.py").write_text("")
    (project / "benchmarks" / "bench.py").write_text(BENCHMARK)
    (project / "asv.conf.json").write_text(ASV_CONF)
    # asv keeps its machine description in ~/.asv-machine.json: a home of its own keeps the user's untouched
    env = {**os.environ, "HOME": str(project), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    asv = [sys.executable, "-m", "asv"]
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "tiny"],
                 [*asv, "machine", "--yes", "--machine", "tiny"],
                 [*asv, "run", "--quick", "--set-commit-hash", "HEAD", "--machine", "tiny"],
                 [*asv, "publish"]):
        done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert (project / "html" / "index.html").is_file()
    return project / "html"


@pytest.fixture
def html_dir(published, tmp_path) -> Path:
    return Path(shutil.copytree(published, tmp_path / "html"))


def only_flot_4(tmp_path: Path) -> Path:
    """A root whose /usr/share/javascript is this machine's, without Haskell's flot 0.8.3 beside it: flot
    then comes from libjs-jquery-flot (flot 4)."""
    root = tmp_path / "root"
    (root / "usr" / "share").mkdir(parents=True)
    (root / "usr" / "share" / "javascript").symlink_to("/usr/share/javascript")
    return root


@pytest.mark.browser
@skip_without_chromium
def test_published_dashboard_needs_the_network_before(html_dir):
    page = render(html_dir / "index.html")
    assert any("code.jquery.com" in url for url in page.page_requests), page.page_requests
    assert "One or more external (JavaScript) dependencies" in page.dom  # asv's error page


@pytest.mark.browser
@skip_without_chromium
@pytest.mark.parametrize("flot", ["as installed", "flot 4"])
def test_dashboard_runs_offline(html_dir, tmp_path, capsys, flot):
    index = html_dir / "index.html"
    cdn_files = len(asv_offline.external_urls(index.read_text()))
    if flot == "as installed":
        assert main(["dashboard", "--html-dir", str(html_dir)]) == 0
        said = capsys.readouterr().err.splitlines()
        assert said[-1].startswith(f"rewrote 1 page(s) in {html_dir} to load {cdn_files} local file(s)"), said
        assert len([line for line in said if not line.startswith("warning: ")]) == cdn_files + 1, said
    else:
        plan = make_offline(html_dir, root=only_flot_4(tmp_path))
        assert any("libjs-jquery-flot" in line for line in plan.lines), f"needs libjs-jquery-flot: {plan.lines}"
        assert any(w.startswith("warning: flot: the page was written for 0.8.3") for w in plan.warnings)
    assert asv_offline.external_urls(index.read_text()) == []

    grid = render(index)
    assert grid.page_requests == [] and grid.errors == [], (grid.page_requests, grid.console)
    assert '<a id="project-name" href="#" class="navbar-link" target="_blank">tiny</a>' in grid.dom  # from index.json
    assert 'id="summarygrid-bench.time_sum"' in grid.dom and 'class="flot-base"' in grid.dom

    graph = render(index, fragment="bench.time_sum")
    assert graph.page_requests == [] and graph.errors == [], (graph.page_requests, graph.console)
    plotted = graph.dom[graph.dom.index('<div id="main-graph"'):]
    assert 'class="flot-base"' in plotted and "tickLabel" in plotted  # flot drew the benchmark's graph

    listing = render(index, fragment="/summarylist")
    assert listing.page_requests == [] and listing.errors == [], (listing.page_requests, listing.console)
    assert 'id="summarylist-table-0"' in listing.dom and "bench.time_sum</a>" in listing.dom
    assert "sorting-asc" in listing.dom  # stupidtable sorted it


def test_a_missing_package_is_named_and_nothing_is_written(published, tmp_path):
    html = Path(shutil.copytree(published, tmp_path / "html"))
    before = {path: path.read_bytes() for path in html.rglob("*") if path.is_file()}
    with pytest.raises(UserError) as error:
        make_offline(html, root=tmp_path / "empty", npm=None)
    message = str(error.value)
    assert "apt-get install -y libjs-jquery libghc-js-flot-data libjs-jquery-stupidtable" in message
    assert "flot-orderbars@1.0.0: install npm" in message
    assert "\n" not in message
    assert {path: path.read_bytes() for path in html.rglob("*") if path.is_file()} == before


def test_another_version_is_used_with_a_warning(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "usr/share/javascript/jquery").mkdir(parents=True)
    (root / "usr/share/javascript/jquery/jquery.min.js").write_text("/* jQuery */")
    (tmp_path / "index.html").write_text(f"<html><head>{JQUERY_CDN}</head></html>")
    monkeypatch.setattr(asv_offline, "debian_version", lambda package: "9.9.9+dfsg-1")
    plan = make_offline(tmp_path, root=root, npm=None)
    assert plan.warnings == ["warning: jquery: the page was written for 3.3.1, libjs-jquery has 9.9.9+dfsg-1"]
    assert (tmp_path / "vendor/jquery/jquery.min.js").read_text() == "/* jQuery */"
    rewritten = (tmp_path / "index.html").read_text()
    assert '<script src="vendor/jquery/jquery.min.js" onerror="js_load_failure()">' in rewritten


def test_an_unknown_cdn_is_an_error(tmp_path):
    (tmp_path / "index.html").write_text('<script src="https://example.com/lib.js"></script>')
    with pytest.raises(UserError, match=r"index.html loads https://example.com/lib.js, which quantbench dashboard"):
        plan_offline(tmp_path, npm=None)


def test_rewrite_touches_only_external_tags():
    text = ('<script src="asv.js"></script>\n<link rel="stylesheet" href="//cdn.example/a.css" crossorigin="x"/>\n'
            '<link rel="alternate" href="https://example.com/feed.xml">\n<a href="https://example.com/">x</a>')
    local = {"//cdn.example/a.css": "vendor/a/a.css", "https://example.com/feed.xml": "vendor/feed.xml"}
    assert rewrite_page(text, local, Path("sub")) == (
        '<script src="asv.js"></script>\n<link rel="stylesheet" href="../vendor/a/a.css"/>\n'
        '<link rel="alternate" href="https://example.com/feed.xml">\n<a href="https://example.com/">x</a>')


def test_the_command_without_published_pages(tmp_path, capsys):
    assert main(["dashboard", "--html-dir", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.strip().endswith("run `asv publish` first")
