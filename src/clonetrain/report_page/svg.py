"""Tiny inline SVG line plots: the report must open anywhere, offline, with no plotting library."""

from __future__ import annotations

from html import escape

import numpy as np

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def line_plot(x: np.ndarray, series: dict[str, np.ndarray], title: str, xlabel: str, width: int = 860,
              height: int = 200, marks: list[float] | None = None, ylim: tuple[float, float] | None = None) -> str:
    """One SVG with a line per series (NaN breaks the line) and optional vertical marks at x values."""
    pad_l, pad_r, pad_t, pad_b = 48, 12, 24, 30
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    x = np.asarray(x, float)
    allv = np.concatenate([np.asarray(v, float)[np.isfinite(v)] for v in series.values()] or [np.zeros(1)])
    lo, hi = ylim if ylim else ((float(allv.min()), float(allv.max())) if allv.size else (0.0, 1.0))
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    x0, x1 = (float(x.min()), float(x.max())) if x.size else (0.0, 1.0)
    if x1 - x0 < 1e-9:
        x1 = x0 + 1

    def px(v):
        return pad_l + (v - x0) / (x1 - x0) * w

    def py(v):
        return pad_t + (1 - (v - lo) / (hi - lo)) * h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="{pad_l}" y="14" font-weight="bold">{escape(title)}</text>',
             f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="#fafafa" stroke="#ccc"/>']
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{pad_l - 4}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    for v in np.linspace(x0, x1, 6):
        parts.append(f'<text x="{px(v):.1f}" y="{height - 14}" text-anchor="middle">{v:.3g}</text>')
    parts.append(f'<text x="{pad_l + w / 2}" y="{height - 2}" text-anchor="middle">{escape(xlabel)}</text>')
    for m in marks or []:
        parts.append(f'<line x1="{px(m):.1f}" x2="{px(m):.1f}" y1="{pad_t}" y2="{pad_t + h}" stroke="#888" '
                     'stroke-dasharray="4 3"/>')
    for i, (name, ys) in enumerate(series.items()):
        ys = np.asarray(ys, float)
        color = PALETTE[i % len(PALETTE)]
        path, pen = [], "M"
        for xv, yv in zip(x, ys):
            if not np.isfinite(yv):
                pen = "M"
                continue
            path.append(f"{pen}{px(xv):.1f},{py(min(max(yv, lo), hi)):.1f}")
            pen = "L"
        parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="1.2"/>')
        parts.append(f'<text x="{pad_l + w - 4}" y="{pad_t + 14 + 13 * i}" text-anchor="end" fill="{color}">'
                     f'{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
