"""Assemble the one-page, self-contained HTML quality report."""

from __future__ import annotations

import base64
from html import escape

import cv2
import numpy as np

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;max-width:900px;color:#222}
h1{margin-bottom:4px} .verdict{padding:10px 14px;border-radius:6px;margin:12px 0;font-size:15px}
.ok{background:#e7f6e7;border:1px solid #7c7} .warn{background:#fff6e0;border:1px solid #e0b040}
.bad{background:#fde8e8;border:1px solid #d66} table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;font-size:13px} li{margin:3px 0}
.strip img{width:84px;height:84px;margin:1px} small{color:#666}
"""


def jpeg_data_uri(rgb: np.ndarray, quality: int = 80) -> str:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


def page(clone: str, verdict: str, level: str, findings: list[str], tables: list[tuple[str, list[str], list[list]]],
         plots: list[str], thumbs: list[str], footer: str, sections: str = "") -> str:
    """`sections`: further HTML, trusted (built by report modules), placed after the tables."""
    rows = []
    for title, head, body in tables:
        rows.append(f"<h3>{escape(title)}</h3><table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>")
        rows += ["<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in r) + "</tr>" for r in body]
        rows.append("</table>")
    items = "".join(f"<li>{escape(f)}</li>" for f in findings) or "<li>nothing to report</li>"
    strip = "".join(f'<img src="{t}" alt="frame">' for t in thumbs)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>clonetrain report: {escape(clone)}</title>"
            f"<style>{STYLE}</style></head><body><h1>Clone report: {escape(clone)}</h1>"
            f"<div class='verdict {level}'><b>{escape(verdict)}</b></div><h3>Findings</h3><ul>{items}</ul>"
            f"<div class='strip'>{strip}</div>{''.join(rows)}{sections}<h3>Plots</h3>{''.join(plots)}"
            f"<p><small>{escape(footer)}</small></p></body></html>")
