"""Render a local HTML file in headless Chromium with the network off, for tests of pages that must work
offline. Every host name resolves to nothing, and the browser's network log is kept so that a test can
check which requests the page itself made:

    page = render(tmp_path / "index.html")
    assert "<svg" in page.dom
    assert page.page_requests == [] and page.errors == []

Loads from file:// do not go through the network stack, so they never appear in the log: a page that
is self-contained makes no logged request at all. The browser also calls home on its own (component
updates, network time, sign-in) however it is started; those requests have no initiating page
("not an origin") and are left out of `page_requests` (they stay in `requests`).

Tests that use this carry `@pytest.mark.browser` and `@skip_without_chromium`: skipped where Debian's
chromium is absent, except under CI (the CI variable set), where its absence fails the test.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser")
INSTALL_HINT = "apt-get install -y chromium"
TIMEOUT_S = 120
BROWSER_ITSELF = "not an origin"  # the net log's initiator of the requests no page made

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
    "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
    # asv's page reads its JSON with XMLHttpRequest, which Chromium refuses from file:// pages without this
    "--allow-file-access-from-files",
)


class ChromiumNotFound(RuntimeError):
    pass


def find_chromium() -> str | None:
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


skip_without_chromium = pytest.mark.skipif(
    find_chromium() is None and not os.environ.get("CI"), reason=f"needs Debian's chromium ({INSTALL_HINT})")


@dataclass
class Request:
    url: str
    initiator: str | None


@dataclass
class Rendered:
    dom: str
    requests: list[Request]
    console: list[str]  # what the page's scripts logged, uncaught errors included

    @property
    def errors(self) -> list[str]:
        return [line for line in self.console if "Uncaught" in line]

    @property
    def page_requests(self) -> list[str]:
        """URLs the page (its HTML, scripts, styles) asked the network for."""
        return sorted({r.url for r in self.requests if r.initiator != BROWSER_ITSELF})


def render(path: str | Path, *, fragment: str = "", budget_ms: int = 5000,
           window: tuple[int, int] = (1280, 1024)) -> Rendered:
    """The DOM of the local file `path` (opened at #`fragment` when given) after its scripts ran for
    `budget_ms` of virtual time, every request the browser logged meanwhile, and the page's console."""
    with tempfile.TemporaryDirectory(prefix="quantbench-chromium-") as work:
        net_log = Path(work) / "net-log.json"
        done = _chromium(path, fragment, work, f"--log-net-log={net_log}", f"--virtual-time-budget={budget_ms}",
                         f"--window-size={window[0]},{window[1]}", "--enable-logging=stderr", "--v=0", "--dump-dom")
        console = [line.split("] ", 1)[-1] for line in done.stderr.splitlines() if ":CONSOLE" in line]
        return Rendered(dom=done.stdout, requests=_logged_requests(net_log), console=console)


def screenshot(path: str | Path, png: str | Path, *, fragment: str = "", budget_ms: int = 5000,
               window: tuple[int, int] = (1280, 1600)) -> Path:
    """A PNG of the local file `path` as a `window`-sized browser shows it, written to `png`."""
    png = Path(png).resolve()
    with tempfile.TemporaryDirectory(prefix="quantbench-chromium-") as work:
        _chromium(path, fragment, work, f"--screenshot={png}", f"--virtual-time-budget={budget_ms}",
                  f"--window-size={window[0]},{window[1]}")
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {path}")
    return png


def _chromium(path: str | Path, fragment: str, work: str, *args: str) -> subprocess.CompletedProcess:
    binary = find_chromium()
    if binary is None:
        raise ChromiumNotFound(f"chromium not found (looked for {', '.join(CANDIDATES)} on PATH); "
                               f"install Debian's: {INSTALL_HINT}")
    url = Path(path).resolve().as_uri() + (f"#{fragment}" if fragment else "")
    argv = [binary, *FLAGS, f"--user-data-dir={Path(work) / 'profile'}", *args, url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited with status {done.returncode} on {url}\n{done.stderr[-4000:]}")
    return done


def _logged_requests(net_log: Path) -> list[Request]:
    """One Request per URL_REQUEST source of the log: its first URL and the initiator its job started with."""
    try:
        log = json.loads(net_log.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RuntimeError(f"chromium's net log {net_log} is missing or unreadable: {exc}") from None
    url_request = log["constants"]["logSourceType"]["URL_REQUEST"]
    urls: dict[int, str] = {}
    initiators: dict[int, str] = {}
    for event in log.get("events", []):
        source, params = event.get("source", {}), event.get("params")
        if source.get("type") != url_request or not isinstance(params, dict):
            continue
        if isinstance(params.get("url"), str):
            urls.setdefault(source["id"], params["url"])
        if isinstance(params.get("initiator"), str):
            initiators.setdefault(source["id"], params["initiator"])
    return [Request(url, initiators.get(source)) for source, url in urls.items()]
