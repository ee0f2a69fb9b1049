"""The landscape as one self-contained HTML page: the experiment table, a Pareto plot of KLD against bits
per value for each case, and a forest plot of each experiment's variants against its baseline.

Everything is inline (style, SVG drawn here, a few lines of script that sort the table when a column
heading is clicked), so the page makes no network request and reads the same without JavaScript.
Every string from the inputs goes through html.escape.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from html import escape

from quantbench.harness.errors import UserError

TABLE_KEYS = ("id", "title", "hypothesis", "result", "confidence", "reproductions", "metrics", "kind", "source")
PARETO_KEYS = ("kv", "bits_per_value", "kld_mean", "case")  # kld_mean_err is optional
PARETO_NUMBERS = ("bits_per_value", "kld_mean", "kld_mean_err")
ARM_KEYS = ("experiment", "variant", "metric", "rel_diff", "ci_low", "ci_high", "expect", "margin", "outcome",
            "direction")
ARM_NUMBERS = ("rel_diff", "ci_low", "ci_high", "margin")
RESULTS = ("success", "failure", "inconclusive", "baseline", "not run", "not runnable here")
OUTCOME_COLOURS = {"better": "#1a7f37", "worse": "#cf222e", "same": "#0969da", "unclear": "#9a6700"}
MAX_DECADES = 8  # the KLD axis spans at most this many powers of ten; smaller values sit on its floor
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1f2328; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; }
.note, .muted { color: #59636e; } .muted { font-size: 0.88em; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
th, td { border-bottom: 1px solid #d0d7de; padding: 0.45em 0.6em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; position: sticky; top: 0; }
th[data-sortable] { cursor: pointer; } th[data-sortable]::after { content: " \\2195"; color: #8c959f; }
td:first-child { white-space: nowrap; }
td.metrics { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85em; }
.result { display: inline-block; padding: 0.1em 0.55em; border-radius: 1em; font-size: 0.85em; white-space: nowrap; }
.success { background: #dafbe1; color: #116329; } .failure { background: #ffebe9; color: #a40e26; }
.inconclusive { background: #fff8c5; color: #7d4e00; } .baseline { background: #ddf4ff; color: #0a3069; }
.not-run, .not-runnable { background: #eaeef2; color: #424a53; }
.stars { color: #bf8700; letter-spacing: 0.05em; white-space: nowrap; }
.summary span { margin-right: 1em; }
figure { margin: 1em 0 2em; } svg.chart { max-width: 100%; height: auto; }
figcaption { font-weight: 600; margin-bottom: 0.3em; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; fill: #1f2328; }
svg .axis { stroke: #57606a; } svg .grid { stroke: #d8dee4; stroke-width: 1; }
svg .tick { font-size: 11px; fill: #57606a; } svg .label { font-size: 12px; }
.empty { padding: 1em; background: #f6f8fa; border: 1px dashed #d0d7de; color: #59636e; }
"""

SORT_SCRIPT = """
document.querySelectorAll("th[data-sortable]").forEach(function (th) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], column = th.cellIndex, up = th.dataset.order !== "up";
    var key = function (row) { var cell = row.cells[column]; return cell.dataset.sort || cell.textContent.trim(); };
    var rows = Array.prototype.slice.call(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
      var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return up ? order : -order;
    });
    th.dataset.order = up ? "up" : "down";
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def render_landscape_html(table: list[dict], pareto: list[dict], arms: list[dict], title: str = "quantbench landscape",
                          note: str = "", pareto_only: bool = False) -> str:
    """The page (a complete HTML document) for the experiment rows `table`, the KV policies' KLD and bits
    per value `pareto`, and each experiment's variants against its baseline `arms`; `pareto_only`: the
    Pareto plots alone (`quantbench search`)."""
    _check(table, TABLE_KEYS, (), "table")
    _check(pareto, PARETO_KEYS, PARETO_NUMBERS, "pareto")
    _check(arms, ARM_KEYS, ARM_NUMBERS, "arms")
    for i, row in enumerate(table):
        confidence = row["confidence"]
        if confidence is not None and (type(confidence) is not int or not 1 <= confidence <= 5):
            raise UserError(f"landscape page: table row {i} ({row['id']!r}): confidence {confidence!r} "
                            "is not an integer from 1 to 5 or None")
    parts = [
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="note">{escape(note)}</p>' if note else "",
        *([] if pareto_only else ['<h2 id="experiments">Experiments</h2>', _summary(table), _table(table)]),
        '<h2 id="pareto">KV cache: KLD against bits per value</h2>', _pareto_section(pareto),
        *([] if pareto_only else ['<h2 id="arms">Variants against their baseline</h2>', _forest_section(arms)]),
        f"<script>{SORT_SCRIPT}</script>", "</body>", "</html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _check(rows: list[dict], keys: tuple[str, ...], numbers: tuple[str, ...], what: str) -> None:
    if not isinstance(rows, list):
        raise UserError(f"landscape page: {what} must be a list of dicts, not {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"landscape page: {what} row {i} is a {type(row).__name__}, not a dict")
        missing = [key for key in keys if key not in row]
        if missing:
            raise UserError(f"landscape page: {what} row {i} has no {', '.join(map(repr, missing))}")
        for key in numbers:
            value = row.get(key)
            if key in row and value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise UserError(f"landscape page: {what} row {i}: {key} {value!r} is not a number")


# --- the table -------------------------------------------------------------------------------------------------

def _result_class(result: str) -> str:
    return "not-runnable" if result.startswith("not runnable") else result.replace(" ", "-")


def _summary(table: list[dict]) -> str:
    if not table:
        return '<p class="empty">No experiments.</p>'
    counts: dict[str, int] = {}
    for row in table:
        result = str(row["result"]).partition(":")[0]
        counts[result] = counts.get(result, 0) + 1
    ordered = sorted(counts, key=lambda r: (RESULTS.index(r) if r in RESULTS else len(RESULTS), r))
    spans = "".join(f'<span><span class="result {escape(_result_class(r))}">{escape(r)}</span> {counts[r]}</span>'
                    for r in ordered)
    return f'<p class="summary">{len(table)} experiments: {spans}</p>'


def _table(table: list[dict]) -> str:
    if not table:
        return ""
    headings = ["id", "experiment", "result", "confidence", "reproductions", "key metrics", "kind", "source"]
    head = "".join(f"<th data-sortable>{escape(h)}</th>" for h in headings)
    body = "\n".join(_table_row(row) for row in table)
    return f'<table id="experiment-table">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def _table_row(row: dict) -> str:
    result, _, reason = str(row["result"]).partition(":")
    why = f'<div class="muted">{escape(reason.strip())}</div>' if reason.strip() else ""
    confidence = row["confidence"]
    stars = ('<span class="muted">-</span>' if confidence is None
             else f'<span class="stars" title="{confidence} of 5">{"★" * confidence}{"☆" * (5 - confidence)}</span>')
    cells = [
        f"<td>{escape(str(row['id']))}</td>",
        f"<td><strong>{escape(str(row['title']))}</strong>"
        f'<div class="muted">{escape(str(row["hypothesis"]))}</div></td>',
        f'<td data-sort="{escape(str(row["result"]))}"><span class="result {escape(_result_class(result))}">'
        f"{escape(result)}</span>{why}</td>",
        f'<td data-sort="{0 if confidence is None else confidence}">{stars}</td>',
        f"<td>{escape(str(row['reproductions']))}</td>",
        f'<td class="metrics">{escape(str(row["metrics"]))}</td>',
        f"<td>{escape(str(row['kind']))}</td>",
        f"<td>{escape(str(row['source']))}</td>",
    ]
    return f"<tr>{''.join(cells)}</tr>"


# --- shared plotting helpers -----------------------------------------------------------------------------------

def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values covering [lo, hi], about `count` of them (steps of 1, 2, 2.5 or 5 times a power of 10)."""
    span = hi - lo if hi > lo else abs(hi) or 1.0
    raw = span / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [round((first + i) * step, 12) for i in range(int(math.floor(hi / step + 1e-9)) - first + 1)]


def _linear(lo: float, hi: float, start: float, end: float) -> Callable[[float], float]:
    return lambda v: start + (v - lo) / (hi - lo) * (end - start)


def _svg(width: int, height: int, label: str, body: list[str], css_class: str) -> str:
    return (f'<svg class="chart {css_class}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
            f"<title>{escape(label)}</title>{''.join(body)}</svg>")


def _text(x: float, y: float, text: str, css: str = "label", anchor: str = "start", extra: str = "",
          tip: str | None = None) -> str:
    title = f"<title>{escape(tip)}</title>" if tip else ""
    return f'<text class="{css}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{title}{escape(text)}</text>'


def _finite(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


# --- Pareto plots: one per case ------------------------------------------------------------------------------

def pareto_frontier(points: list[dict]) -> list[dict]:
    """The points no other point beats: none has at most as many bits per value and a lower KLD."""
    frontier, best = [], math.inf
    for point in sorted(points, key=lambda p: (p["bits_per_value"], p["kld_mean"])):
        if point["kld_mean"] < best:
            frontier.append(point)
            best = point["kld_mean"]
    return frontier


def _pareto_section(pareto: list[dict]) -> str:
    if not pareto:
        return '<p class="empty">Nothing to plot: no KV policy has a KLD and bits-per-value measurement.</p>'
    cases: dict[str, list[dict]] = {}
    for point in pareto:
        cases.setdefault(str(point["case"]), []).append(point)
    return "\n".join(_pareto_figure(case, points) for case, points in cases.items())


def _pareto_figure(case: str, points: list[dict]) -> str:
    drawn = [p for p in points if _finite(p["bits_per_value"], p["kld_mean"])]
    skipped = len(points) - len(drawn)
    caption = f'<figcaption>case {escape(case)} <span class="muted">({len(drawn)} KV policies)</span></figcaption>'
    if not drawn:
        return f'<figure>{caption}<p class="empty">Nothing to plot: no finite KLD for this case.</p></figure>'
    width, height, left, right, top, bottom = 1000, 460, 74, 24, 20, 56
    floor_decade, top_decade = _kld_decades(drawn)
    floor = 10.0 ** floor_decade
    bits = [p["bits_per_value"] for p in drawn]
    x_lo, x_hi = min(bits) - 0.5, max(bits) + 0.5
    x = _linear(x_lo, x_hi, left, width - right)
    y = _linear(floor_decade, top_decade, height - bottom, top)

    def y_of(kld: float) -> float:
        return y(math.log10(max(kld, floor)))

    body = []
    for tick in nice_ticks(x_lo, x_hi, 12):
        body += [f'<line class="grid" x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{height - bottom}"/>',
                 _text(x(tick), height - bottom + 16, f"{tick:g}", "tick", "middle")]
    for decade in range(floor_decade, top_decade + 1):
        body += [f'<line class="grid" x1="{left}" y1="{y(decade):.1f}" x2="{width - right}" y2="{y(decade):.1f}"/>',
                 _text(left - 8, y(decade) + 4, f"10{str(decade).translate(SUPERSCRIPT)}", "tick", "end")]
        if top_decade - floor_decade <= 4 and decade < top_decade:
            body += [f'<line class="grid" x1="{left}" y1="{y(decade + math.log10(m)):.1f}" x2="{width - right}" '
                     f'y2="{y(decade + math.log10(m)):.1f}" stroke-dasharray="2 3"/>' for m in range(2, 10)]
    body += [f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}"/>',
             f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}"/>',
             _text((left + width - right) / 2, height - 14, "bits per value", "label", "middle"),
             _text(16, (top + height - bottom) / 2, "mean KLD (nats, log scale)", "label", "middle",
                   f' transform="rotate(-90 16 {(top + height - bottom) / 2:.1f})"')]

    frontier = pareto_frontier(drawn)
    line = " ".join(f"{x(p['bits_per_value']):.1f},{y_of(p['kld_mean']):.1f}" for p in frontier)
    body.append(f'<polyline points="{line}" fill="none" stroke="#0969da" stroke-width="2" stroke-dasharray="6 4"/>')
    on_frontier = {id(p) for p in frontier}
    ordered = sorted(drawn, key=lambda p: (p["bits_per_value"], p["kld_mean"]))
    centres = [(x(p["bits_per_value"]), y_of(p["kld_mean"])) for p in ordered]
    taken = [(cx - 6, cy + 6, 12, 12) for cx, cy in centres]  # the markers, as label boxes
    labels = []
    for p, (px, py) in zip(ordered, centres):
        err = p.get("kld_mean_err")
        if _finite(err) and err > 0:
            body.append(f'<line x1="{px:.1f}" y1="{y_of(p["kld_mean"] - err):.1f}" x2="{px:.1f}" '
                        f'y2="{y_of(p["kld_mean"] + err):.1f}" stroke="#57606a"/>')
        tip = f"{p['kv']}: {p['bits_per_value']:g} bits/value, KLD {p['kld_mean']:.3g}"
        if _finite(err):
            tip += f" ± {err:.2g}"
        fill = "#0969da" if id(p) in on_frontier else "#ffffff"
        body.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" fill="{fill}" stroke="#0969da" stroke-width="1.5">'
                    f"<title>{escape(tip)}</title></circle>")
        label = str(p["kv"])
        if p["kld_mean"] < floor:
            label += " (KLD ≤ 0)" if p["kld_mean"] <= 0 else f" (KLD < 10{str(floor_decade).translate(SUPERSCRIPT)})"
        labels.append(_place_label(px, py, label, taken, left, width - right, top, height - bottom))
    legend_y = top + 14
    body += [*labels,
             f'<line x1="{width - right - 210}" y1="{legend_y - 4}" x2="{width - right - 180}" y2="{legend_y - 4}" '
             'stroke="#0969da" stroke-width="2" stroke-dasharray="6 4"/>',
             _text(width - right - 174, legend_y, "Pareto frontier (filled points)", "tick")]
    note = f'<p class="muted">{skipped} point(s) with a non-finite value not drawn.</p>' if skipped else ""
    chart = _svg(width, height, f"mean KLD against bits per value, case {case}", body, "pareto")
    return f"<figure>{caption}{chart}{note}</figure>"


def _kld_decades(points: list[dict]) -> tuple[int, int]:
    """The powers of ten the KLD axis runs between: from the smallest positive KLD (a decade lower when some
    KLD is 0, so those points sit visibly on the floor) to the largest KLD plus its error, at most MAX_DECADES."""
    positive = [p["kld_mean"] for p in points if p["kld_mean"] > 0]
    highest = max([p["kld_mean"] + (p.get("kld_mean_err") or 0) for p in points if p["kld_mean"] > 0] or [1.0])
    top = math.ceil(math.log10(highest) + 0.15)  # some room above the highest point
    floor = math.floor(math.log10(min(positive))) if positive else top - 1
    if len(positive) < len(points):
        floor -= 1
    floor = max(floor, top - MAX_DECADES)
    return min(floor, top - 1), top


def _place_label(px: float, py: float, text: str, taken: list, x_min: float, x_max: float, y_min: float,
                 y_max: float) -> str:
    """The point's label, at the first place beside it that overlaps no marker or label placed before and
    stays inside the plot (else at the first place inside it)."""
    w, h = 6.6 * len(text) + 4, 13
    candidates = [(px + 8, py - 6), (px + 8, py + 14), (px - 8 - w, py - 6), (px - 8 - w, py + 14),
                  (px + 8, py - 20), (px - 8 - w, py - 20), (px - w / 2, py - 12), (px - w / 2, py + 24),
                  (px + 8, py + 28), (px - 8 - w, py + 28), (px + 8, py - 34), (px - 8 - w, py - 34)]
    fits = [(cx, cy) for cx, cy in candidates if x_min <= cx and cx + w <= x_max and y_min + h <= cy <= y_max - 2]
    free = [(cx, cy) for cx, cy in fits
            if not any(cx < bx + bw and bx < cx + w and cy - h < by and by - bh < cy for bx, by, bw, bh in taken)]
    cx, cy = (free or fits or candidates)[0]
    taken.append((cx, cy, w, h))
    return _text(cx, cy, text, "label")


# --- forest plots: one per experiment ------------------------------------------------------------------------

def _forest_section(arms: list[dict]) -> str:
    if not arms:
        return '<p class="empty">Nothing to plot: no experiment has variants measured against a baseline.</p>'
    experiments: dict[str, list[dict]] = {}
    for arm in arms:
        experiments.setdefault(str(arm["experiment"]), []).append(arm)
    return "\n".join(_forest_figure(experiment, variants) for experiment, variants in experiments.items())


def _shortened(text: str, pixels: float) -> str:
    most = max(4, int(pixels / 6.8))
    return text if len(text) <= most else text[:most - 1] + "…"


def _percent(value: float, decimals: int = 1) -> str:
    return "0%" if value == 0 else f"{value * 100:+.{decimals}f}%"


def _forest_figure(experiment: str, variants: list[dict]) -> str:
    first = variants[0]
    margin = abs(first["margin"]) if _finite(first["margin"]) else 0.0
    better = "lower" if str(first["direction"]) == "lower" else "higher"
    caption = (f"<figcaption>{escape(experiment)} <span class=\"muted\">{escape(str(first['metric']))} "
               f"({escape(better)} is better), margin ±{margin * 100:.3g}%</span></figcaption>")
    drawn = [v for v in variants if _finite(v["rel_diff"], v["ci_low"], v["ci_high"])]
    skipped = len(variants) - len(drawn)
    if not drawn:
        return f'<figure>{caption}<p class="empty">Nothing to plot: no finite difference.</p></figure>'
    label_w, plot_w, values_w, outcome_w, row_h, top, bottom = 240, 440, 190, 170, 28, 10, 44
    width, height = label_w + plot_w + values_w + outcome_w, top + row_h * len(drawn) + bottom
    values = [0.0, -margin, margin, *(v[key] for v in drawn for key in ("rel_diff", "ci_low", "ci_high"))]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or 0.05
    lo, hi = lo - pad, hi + pad
    x = _linear(lo, hi, label_w, label_w + plot_w)
    axis_y = top + row_h * len(drawn)
    body = [f'<rect x="{x(-margin):.1f}" y="{top}" width="{x(margin) - x(-margin):.1f}" height="{axis_y - top}" '
            'fill="#ddf4ff" opacity="0.8"><title>± margin: a difference inside counts as the same</title></rect>']
    ticks = nice_ticks(lo, hi, 8)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 0.1
    decimals = max(0, -math.floor(math.log10(step * 100) + 1e-9))
    for tick in ticks:
        body += [f'<line class="grid" x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{axis_y}"/>',
                 _text(x(tick), axis_y + 15, _percent(tick, decimals), "tick", "middle")]
    body += [f'<line class="axis" x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}"/>',
             f'<line x1="{x(0):.1f}" y1="{top - 4}" x2="{x(0):.1f}" y2="{axis_y}" stroke="#1f2328" '
             'stroke-width="1.5"><title>the baseline</title></line>',
             _text(x(0), axis_y + 32, "baseline", "tick", "middle"),
             _text(label_w if better == "lower" else label_w + plot_w, axis_y + 32,
                   "← better" if better == "lower" else "better →", "tick", "start" if better == "lower" else "end")]
    for row, v in enumerate(drawn):
        cy = top + row_h * row + row_h / 2
        colour = OUTCOME_COLOURS.get(str(v["outcome"]), "#57606a")
        summary = (f"{v['variant']}: {_percent(v['rel_diff'])} [{_percent(v['ci_low'])}, {_percent(v['ci_high'])}], "
                   f"expected {v['expect']}, found {v['outcome']}")
        body += [_text(label_w - 10, cy + 4, _shortened(str(v["variant"]), label_w - 16), "label", "end",
                       tip=str(v["variant"])),
                 f'<line x1="{x(v["ci_low"]):.1f}" y1="{cy:.1f}" x2="{x(v["ci_high"]):.1f}" y2="{cy:.1f}" '
                 f'stroke="{colour}" stroke-width="2.5"/>',
                 f'<circle cx="{x(v["rel_diff"]):.1f}" cy="{cy:.1f}" r="5" fill="{colour}">'
                 f"<title>{escape(summary)}</title></circle>",
                 _text(label_w + plot_w + 12, cy + 4,
                       f"{_percent(v['rel_diff'])} [{_percent(v['ci_low'])}, {_percent(v['ci_high'])}]", "tick"),
                 _text(label_w + plot_w + values_w, cy + 4, f"{v['outcome']} (expected {v['expect']})", "tick",
                       "start", f' style="fill: {colour}"')]
    note = f'<p class="muted">{skipped} variant(s) with a non-finite difference not drawn.</p>' if skipped else ""
    chart = _svg(width, height, f"{experiment}: relative difference of each variant against the baseline", body,
                 "forest")
    return f"<figure>{caption}{chart}{note}</figure>"
