"""Make asv's published dashboard work without internet: every script and stylesheet its pages load from a
CDN is replaced by a local copy under <html dir>/vendor/, taken from a package installed on this machine.

Debian packages come first: of those installed, one with the version the page asks for, else the first
listed (with a warning naming both versions). A library no installed Debian package has is taken from the
npm registry's package of the asked version (`npm pack`, which answers from npm's cache once fetched).
Every file is found before anything is written, so a missing package leaves the pages as they were and
the error names what to install.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from quantbench.harness.errors import UserError
from quantbench.kernels.storage import write_atomic

VENDOR_DIR = "vendor"
NPM_TIMEOUT_S = 180


@dataclass(frozen=True)
class Debian:
    package: str
    folder: str  # under the root, e.g. usr/share/javascript/jquery
    files: dict[str, str]  # the CDN's file path -> path in `folder`
    companions: tuple[str, ...] = ()  # folders in `folder` that the files refer to (a stylesheet's fonts)


@dataclass(frozen=True)
class Npm:
    package: str
    files: dict[str, str]  # the CDN's file path -> path inside the package
    companions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Library:
    debian: tuple[Debian, ...]  # in order of preference
    npm: Npm | None = None


def _same_names(*names: str) -> dict[str, str]:
    return {name: name for name in names}


FLOT_FILES = tuple(f"jquery.flot{part}.min.js" for part in ("", ".time", ".selection", ".categories"))

# What asv 0.6's index.html loads, keyed by the library name in its CDN URLs.
LIBRARIES = {
    "jquery": Library((Debian("libjs-jquery", "usr/share/javascript/jquery", _same_names("jquery.min.js")),),
                      Npm("jquery", {"jquery.min.js": "dist/jquery.min.js"})),
    # Haskell's js-flot data package ships flot 0.8.3 itself; libjs-jquery-flot is flot 4, whose built-in
    # axis labels draw each label a second time beside asv's own axislabels plugin.
    "flot": Library((Debian("libghc-js-flot-data", "usr/share/haskell-js-flot", _same_names(*FLOT_FILES)),
                     Debian("libjs-jquery-flot", "usr/share/javascript/jquery-flot", _same_names(*FLOT_FILES))),
                    # the npm package has no minified files; the plain ones are the same code
                    Npm("flot", {name: name.replace(".min.js", ".js") for name in FLOT_FILES})),
    "flot-orderbars": Library((), Npm("flot-orderbars", _same_names("js/jquery.flot.orderBars.js"))),
    "stupidtable": Library((Debian("libjs-jquery-stupidtable", "usr/share/javascript/jquery-stupidtable",
                                   _same_names("stupidtable.min.js")),)),
    "blueimp-md5": Library((Debian("node-blueimp-md5", "usr/share/javascript/blueimp-md5",
                                   {"js/md5.min.js": "md5.min.js"}),),
                           Npm("blueimp-md5", _same_names("js/md5.min.js"))),
    "bootstrap": Library((Debian("libjs-bootstrap", "usr/share/javascript/bootstrap",
                                 {"dist/js/bootstrap.min.js": "js/bootstrap.min.js",
                                  "dist/css/bootstrap.min.css": "css/bootstrap.min.css"}, companions=("fonts",)),),
                         Npm("bootstrap", _same_names("dist/js/bootstrap.min.js", "dist/css/bootstrap.min.css"),
                             companions=("dist/fonts",))),
}

CDN_URLS = (
    re.compile(r"https?://code\.jquery\.com/(?P<library>jquery)-(?P<version>[\w.-]+?)\.min\.js$"),
    re.compile(r"https?://cdnjs\.cloudflare\.com/ajax/libs/(?P<library>[^/]+)/(?P<version>[^/]+)/(?P<file>.+)$"),
    re.compile(r"https?://cdn\.jsdelivr\.net/npm/(?P<library>[^@/]+)@(?P<version>[^/]+)/(?P<file>.+)$"),
)

TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
ATTRIBUTE = re.compile(r"""\s+([^\s=>/]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?""")
EXTERNAL = re.compile(r"(https?:)?//", re.IGNORECASE)
LOADING_RELS = {"stylesheet", "icon", "preload", "modulepreload", "prefetch", "manifest", "apple-touch-icon"}
# The CDN's subresource-integrity hashes do not match other builds, and `crossorigin` makes Chromium apply
# CORS to the local file, which a page opened from file:// fails.
CDN_ONLY_ATTRIBUTES = {"integrity", "crossorigin", "referrerpolicy"}


@dataclass(frozen=True)
class CdnFile:
    url: str
    library: str
    version: str
    file: str

    @property
    def name(self) -> str:
        return f"{self.library} {self.version} ({self.file})"


@dataclass
class Source:
    """Where a library's files were found: the package and its version, and the files by CDN path."""
    package: str
    version: str | None
    files: dict[str, tuple[str, bytes]]  # CDN file path -> (path in the package, content)
    companions: dict[str, bytes]  # path in the package -> content


@dataclass
class Plan:
    """Everything to write, found before anything is written, and what to say about it."""
    pages: dict[Path, str] = field(default_factory=dict)
    files: dict[Path, bytes] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def make_offline(html_dir: str | Path, *, root: str | Path = "/", npm: str | None = "npm") -> Plan:
    """Point the published pages in `html_dir` at local copies of their CDN files; returns what was done.
    `root` is where the Debian packages' folders are looked for; `npm` the npm executable (None: no npm)."""
    plan = plan_offline(html_dir, root=root, npm=npm)
    for path, content in plan.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, content)
    for path, text in plan.pages.items():
        write_atomic(path, text.encode("utf-8"))
    return plan


def plan_offline(html_dir: str | Path, *, root: str | Path = "/", npm: str | None = "npm") -> Plan:
    html_dir = Path(html_dir)
    pages = sorted(p for p in html_dir.rglob("*.html") if VENDOR_DIR not in p.relative_to(html_dir).parts)
    if not pages:
        raise UserError(f"no published pages (*.html) in {html_dir}: run `asv publish` first")
    texts = {page: page.read_text(encoding="utf-8") for page in pages}
    cdn_files = {url: parse_cdn_url(url, page.name) for page, text in texts.items() for url in external_urls(text)}
    wanted = _files_by_library(cdn_files.values())

    packs = NpmPacks(shutil.which(npm) if npm else None)
    try:
        sources = {library: find_source(library, version, files, Path(root), packs)
                   for library, (version, files) in wanted.items()}
    finally:
        packs.close()
    missing = [library for library, source in sources.items() if source is None]
    if missing:
        raise UserError(missing_message({library: wanted[library] for library in missing}, packs))

    plan = Plan()
    targets = {}
    for library, source in sources.items():
        version = wanted[library][0]
        folder = f"{VENDOR_DIR}/{library}"
        for cdn_path, (inner, content) in source.files.items():
            targets[cdn_path, library] = f"{folder}/{inner}"
            plan.files[html_dir / folder / inner] = content
            plan.lines.append(f"{library} {version} ({cdn_path}): {source.package} {source.version or '?'} ({inner})")
        for inner, content in source.companions.items():
            plan.files[html_dir / folder / inner] = content
        if source.version is None:
            plan.warnings.append(f"warning: {library}: the version of {source.package} is unknown (no dpkg-query)")
        elif upstream_version(source.version) != version:
            plan.warnings.append(f"warning: {library}: the page was written for {version}, "
                                 f"{source.package} has {source.version}")
    by_url = {url: targets[cdn.file, cdn.library] for url, cdn in cdn_files.items()}
    for page, text in texts.items():
        rewritten = rewrite_page(text, by_url, page.parent.relative_to(html_dir))
        if rewritten != text:
            plan.pages[page] = rewritten
    return plan


def external_urls(text: str) -> list[str]:
    """The URLs of the scripts, stylesheets and icons a page loads from another host."""
    return [url for _, _, url in _external_tags(text)]


def parse_cdn_url(url: str, page: str) -> CdnFile:
    for pattern in CDN_URLS:
        if (match := pattern.match(url)) and match["library"] in LIBRARIES:
            file = match.groupdict().get("file") or "jquery.min.js"
            return CdnFile(url, match["library"], match["version"], file)
    raise UserError(f"{page} loads {url}, which quantbench dashboard has no local source for "
                    f"(it knows {', '.join(sorted(LIBRARIES))} from asv's CDNs)")


def _files_by_library(cdn_files) -> dict[str, tuple[str, list[str]]]:
    wanted: dict[str, tuple[str, list[str]]] = {}
    for cdn in cdn_files:
        version, files = wanted.setdefault(cdn.library, (cdn.version, []))
        if cdn.version != version:
            raise UserError(f"the pages ask for two versions of {cdn.library}: {version} and {cdn.version}")
        if cdn.file not in files:
            files.append(cdn.file)
    return wanted


def find_source(library: str, version: str, files: list[str], root: Path, packs: NpmPacks) -> Source | None:
    """The installed package that has all of `files` of `library`: a Debian one of `version`, else the first
    Debian one installed, else npm's package of `version`; None where none has them."""
    installed = [source for debian in LIBRARIES[library].debian if (source := _debian_source(debian, files, root))]
    exact = [source for source in installed if source.version and upstream_version(source.version) == version]
    if exact or installed:
        return (exact or installed)[0]
    npm = LIBRARIES[library].npm
    if npm is None or not all(file in npm.files for file in files):
        return None
    pack = packs.get(npm.package, version)
    if pack is None or not all(npm.files[file] in pack for file in files):
        return None
    companions = {name: content for name, content in pack.items()
                  if any(name.startswith(f"{folder}/") for folder in npm.companions)}
    return Source(f"npm {npm.package}", version, {file: (npm.files[file], pack[npm.files[file]]) for file in files},
                  companions)


def _debian_source(debian: Debian, files: list[str], root: Path) -> Source | None:
    folder = root / debian.folder
    if not all(file in debian.files and (folder / debian.files[file]).is_file() for file in files):
        return None
    companions = {path.relative_to(folder).as_posix(): path.read_bytes()
                  for name in debian.companions for path in sorted((folder / name).rglob("*")) if path.is_file()}
    return Source(debian.package, debian_version(debian.package),
                  {file: (debian.files[file], (folder / debian.files[file]).read_bytes()) for file in files},
                  companions)


def debian_version(package: str) -> str | None:
    try:
        done = subprocess.run(["dpkg-query", "--show", "--showformat=${Version}", package],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def upstream_version(debian: str) -> str:
    """'1:3.6.1+dfsg+~3.5.14-1' -> '3.6.1': no epoch, no repackaging suffix, no Debian revision."""
    match = re.match(r"(?:\d+:)?(\d+(?:\.\d+)*)", debian)
    return match.group(1) if match else debian


def missing_message(missing: dict[str, tuple[str, list[str]]], packs: NpmPacks) -> str:
    names = ", ".join(f"{library} {version} ({', '.join(files)})" for library, (version, files) in missing.items())
    parts = [f"no installed package has {names}; the pages were left as they were"]
    apt = [LIBRARIES[library].debian[0].package for library in missing if LIBRARIES[library].debian]
    if apt:
        parts.append(f"install it with: apt-get install -y {' '.join(apt)}")
    npm_only = [f"{LIBRARIES[library].npm.package}@{version}" for library, (version, _) in missing.items()
                if not LIBRARIES[library].debian and LIBRARIES[library].npm]
    for spec in npm_only:
        if packs.npm is None:
            parts.append(f"no Debian package has {spec}: install npm, which fetches it from the npm registry")
        else:
            parts.append(f"no Debian package has {spec} and `npm pack {spec}` failed "
                         f"({packs.errors.get(spec, 'no such file in it')}): let npm reach its registry once")
    return "; ".join(parts)


def rewrite_page(text: str, local: dict[str, str], page_dir: Path) -> str:
    """`text` with each external src/href found in `local` (URL -> path under the html dir) pointed at that
    path relative to the page, and the CDN-only attributes of those tags dropped."""
    pieces, last = [], 0
    for match, attribute, url in _external_tags(text):
        if url in local:
            relative = Path(os.path.relpath(local[url], page_dir)).as_posix()
            pieces += [text[last:match.start()], _rebuild(match.group(0), attribute, relative)]
            last = match.end()
    return "".join(pieces) + text[last:]


def _external_tags(text: str):
    for match in TAG.finditer(text):
        name = match.group(1).lower()
        attributes = {key.lower(): _unquote(value) for key, value in _attributes(match.group(0))}
        if name == "link" and not LOADING_RELS & set(attributes.get("rel", "").lower().split()):
            continue
        attribute = "src" if name == "script" else "href"
        if EXTERNAL.match(attributes.get(attribute, "")):
            yield match, attribute, attributes[attribute]


def _attributes(tag: str) -> list[tuple[str, str]]:
    return ATTRIBUTE.findall(tag[len(re.match(r"<\w+", tag).group(0)):].rstrip(">").rstrip("/"))


def _rebuild(tag: str, attribute: str, url: str) -> str:
    name = re.match(r"<(\w+)", tag).group(1)
    kept = [f'{key}="{url}"' if key.lower() == attribute else (f"{key}={value}" if value else key)
            for key, value in _attributes(tag) if key.lower() not in CDN_ONLY_ATTRIBUTES]
    return f"<{name} {' '.join(kept)}{'/>' if tag.endswith('/>') else '>'}"


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0] else value


class NpmPacks:
    """npm packages fetched with `npm pack` into a temporary folder and read: {path inside: content}."""

    def __init__(self, npm: str | None):
        self.npm = npm
        self.folder: tempfile.TemporaryDirectory | None = None
        self.packs: dict[str, dict[str, bytes] | None] = {}
        self.errors: dict[str, str] = {}

    def get(self, package: str, version: str) -> dict[str, bytes] | None:
        spec = f"{package}@{version}"
        if spec not in self.packs:
            self.packs[spec] = self._fetch(spec) if self.npm else None
        return self.packs[spec]

    def _fetch(self, spec: str) -> dict[str, bytes] | None:
        if self.folder is None:
            self.folder = tempfile.TemporaryDirectory(prefix="quantbench-npm-")
        argv = [self.npm, "pack", spec, "--json", "--prefer-offline", "--fetch-retries=1",
                f"--pack-destination={self.folder.name}"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, cwd=self.folder.name)
            if done.returncode != 0:
                self.errors[spec] = _npm_error(done)
                return None
            tarball = Path(self.folder.name) / json.loads(done.stdout)[0]["filename"]
            with tarfile.open(tarball) as archive:
                return {member.name.removeprefix("package/"): archive.extractfile(member).read()
                        for member in archive.getmembers() if member.isfile()}
        except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError, tarfile.TarError) as exc:
            self.errors[spec] = str(exc) or type(exc).__name__
            return None

    def close(self) -> None:
        if self.folder is not None:
            self.folder.cleanup()


def _npm_error(done: subprocess.CompletedProcess) -> str:
    """npm's own summary of why it failed (its --json error), else the first line of its error output."""
    try:
        error = json.loads(done.stdout)["error"]
        return f"{error['code']}: {error['summary']}"
    except (ValueError, KeyError, TypeError):
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return lines[0] if lines else f"npm pack exited with status {done.returncode}"
