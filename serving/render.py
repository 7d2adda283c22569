"""One renderer for every page and message churnlens writes: the per-CSM risk lists, the
portfolio summary, the board report and the digest e-mails.

It owns what those pages share, so each is made the same way: the jinja2 environment over
``serving/templates`` (autoescape on for HTML, so account names and reason text always render
as text), the page shell (``_page.html.j2``: doctype, charset, viewport, title), the report's
page parts (:class:`Section`, :class:`Table`, rendered by ``_parts.html.j2``), plain HTML
tables, and the charts: small inline SVG bars, and matplotlib figures (object API, no pyplot, no
GUI backend) embedded as base64 PNGs. Nothing is fetched when a page is opened, so a page can be
mailed or opened offline. Nothing here computes a figure: callers pass formatted text.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from matplotlib.figure import Figure

TEMPLATES = Path(__file__).parent / "templates"


def environment(
    filters: Mapping[str, Callable[..., Any]] | None = None, *, autoescape: bool = True
) -> Environment:
    """The jinja2 environment over ``serving/templates`` with ``filters`` registered;
    ``autoescape=False`` only for plain-text templates (the text e-mail)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"], default=True) if autoescape else False,
    )
    env.filters.update(filters or {})
    return env


def render(
    template: str,
    context: Mapping[str, Any],
    *,
    filters: Mapping[str, Callable[..., Any]] | None = None,
    autoescape: bool = True,
) -> str:
    """Render one template of ``serving/templates`` with ``context``."""
    return environment(filters, autoescape=autoescape).get_template(template).render(**context)


# --- page parts (the report's sections; serving modules contribute their own) ------------------


@dataclass
class Table:
    """A table of formatted cells: ``rows`` are ``{"cells": [...], "status": "", "text": [...]}``
    (``status`` greys or colours the row, ``text`` marks cells aligned left as words)."""

    columns: list[str]
    rows: list[dict[str, Any]]
    caption: str = ""


@dataclass
class Section:
    """One titled part of a page: notes, callouts, images and tables, or what is missing."""

    title: str
    anchor: str
    images: list[dict[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: str = ""
    callouts: list[str] = field(default_factory=list)  # sentences set apart (bias, alerts)
    alert: bool = False  # callouts are alerts (red), else plain statements


# --- tables ------------------------------------------------------------------------------------


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain HTML table; ``headers`` are escaped here, cells must already be safe HTML."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="fit"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# --- charts ------------------------------------------------------------------------------------


def figure_png(fig: Figure) -> str:
    """Base64 PNG of a matplotlib figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def image(fig: Figure, alt: str) -> dict[str, str]:
    """A figure as a :class:`Section` image (``_parts.html.j2`` embeds it as a data URI)."""
    return {"data": figure_png(fig), "alt": alt}


def horizontal_bars_svg(values: pd.Series, *, title: str, label: Callable[[float], str]) -> Markup:
    """Horizontal bars, one per index entry, each labelled with ``label(value)``, as inline
    SVG."""
    width, row_h, label_w = 520, 26, 150
    top = max(values.max(), 1.0) if len(values) else 1.0
    rows = []
    for i, (key, value) in enumerate(values.items()):
        y = 28 + i * row_h
        bar = (width - label_w - 110) * float(value) / top
        rows.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(str(key))}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{bar:.1f}" height="{row_h - 8}" '
            f'fill="#c0392b"/><text x="{label_w + bar + 6:.1f}" y="{y + 15}">'
            f"{escape(label(float(value)))}</text>"
        )
    height = 36 + row_h * max(len(values), 1)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" font-size="12" font-family="sans-serif">'
        f'<text x="0" y="16" font-weight="bold">{escape(title)}</text>{"".join(rows)}</svg>'
    )


def columns_svg(labels: Sequence[str], counts: Sequence[int], *, title: str) -> Markup:
    """Vertical bars of counts, one per label, as inline SVG."""
    width, height, base = 520, 200, 160
    step = (width - 20) / max(len(labels), 1)
    top = max(max(counts, default=0), 1)
    bars = []
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        h = (base - 40) * count / top
        x = 10 + i * step
        bars.append(
            f'<rect x="{x + 4:.1f}" y="{base - h:.1f}" width="{step - 8:.1f}" height="{h:.1f}" '
            f'fill="#2c7fb8"/><text x="{x + step / 2:.1f}" y="{base - h - 4:.1f}" '
            f'text-anchor="middle">{count:,}</text><text x="{x + step / 2:.1f}" y="{base + 16}" '
            f'text-anchor="middle" font-size="10">{escape(label)}</text>'
        )
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" font-size="11" font-family="sans-serif">'
        f'<text x="0" y="16" font-weight="bold" font-size="12">{escape(title)}</text>'
        f"{''.join(bars)}</svg>"
    )
