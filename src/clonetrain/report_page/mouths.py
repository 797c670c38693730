"""The report's "Mouths" section: does the mouth look real, and does it follow other people's voices?

The contact sheet (evaluate/mouths.png: real | clone | static, held-out frames and one frame per driver), the
cross-speaker table per driver with the static frame beside the clone, and issue 13's targets with their values.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

from clonetrain.contract.files import name_of
from clonetrain.contract import metrics as declared


def _table(head: list[str], rows: list[list]) -> str:
    return ("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{escape('' if v is None else str(v))}</td>" for v in r) + "</tr>"
                      for r in rows) + "</table>")


def section(eval_dir: Path) -> str:
    """HTML for the evaluation folder, or "" before stage=evaluate has run."""
    path = eval_dir / name_of("evaluate", "metrics")
    if not path.is_file():
        return ""
    ev = json.loads(path.read_text())
    parts = ["<h2>Mouths</h2>"]
    sheet = eval_dir / name_of("evaluate", "mouths")
    if sheet.is_file():
        uri = "data:image/png;base64," + base64.b64encode(sheet.read_bytes()).decode()
        parts.append("<p><small>Mouths, enlarged: real | clone | static frame. Held-out rows: the person's own "
                     "frames the clone never trained on. Driver rows: the clone speaking another person's voice at "
                     "that person's widest-open syllable, beside that person's real mouth.</small></p>"
                     f'<img src="{uri}" alt="contact sheet of mouths" style="max-width:100%">')
    c = ev["metrics"].get("clone", {})
    if c.get("mouth_sharpness_ratio") is not None:
        parts.append(f"<p>Held-out mouth: {_texture_numbers(c)}. Sharpness and frame-to-frame change are over the "
                     "real mouth's: 1.0 is as sharp; above 1 it jumps, near 0 it is still.</p>")
    texture = ev.get("mouth_texture") or {}
    if texture.get("without"):
        parts.append(f"<p><small>The mouth and its fine detail are the person's own, taken from "
                     f"{texture.get('bank_frames')} of their training frames (mouth_texture). Without them, the "
                     f"generator's own mouth: {_texture_numbers(texture['without'])}.</small></p>")
    full = texture.get("full_size")
    if full:
        parts.append(f"<p><small>Renders paste the face at the footage's size, with the mouth painted from the "
                     f"{full['size']} px crops; there: {_texture_numbers(full['with'])} (the generator's face "
                     f"enlarged: {_texture_numbers(full['without'])}).</small></p>")
    xs = ev.get("cross_speaker") or {}
    if xs.get("drivers"):
        # .get: a metrics.json written by an older evaluate lacks the newer measures.
        rows = [[d["driver"], f"{d.get('offset_applied_frames', 0):+d} (measured {d.get('offset_frames')})",
                 *_driver_cells(d["clone"], d["static_frame"]),
                 f"{d['clone'].get('sync_peak_corr')} at {d['clone'].get('sync_offset_frames')}"]
                for d in xs["drivers"]]
        rows.append(["mean", "", *_driver_cells(xs["mean"]["clone"], xs["mean"]["static_frame"]),
                     xs["mean"]["clone"].get("sync_peak_corr")])
        closed = xs.get("closed_mouth") or {}
        parts.append("<h3>Driven by other people's voices</h3><p><small>The clone speaks each driver's sound "
                     "(aligned at the offset shown, in frames) over its own held-out footage; the judge compares its "
                     "mouth with the driver's real one. LMD: mouth points about their centre in eye distances, each "
                     "face's mean shape removed (lower is better). Shut in pauses: the share of the driver's pause "
                     f"frames where the clone's mouth opening stays at or below {closed.get('max_opening')} (the "
                     f"{closed.get('percentile', 0):g}th percentile of its own opening, from {closed.get('from')}). "
                     "Follows the sound: the offset estimator's peak correlation between the clone's mouth changes "
                     "and the driver's voice energy changes, at the offset (frames) where it peaks; near 0 is in sync."
                     "</small></p>"
                     + _table(["driver", "offset",
                               *[h for d in declared.DRIVER for h in (d.label, d.static_label) if h],
                               "follows the sound (r at offset)"], rows))
    for w in xs.get("warnings", []):
        parts.append(f"<p><small>Cross-speaker: {escape(w)}</small></p>")
    if ev.get("target_values"):
        parts.append("<h3>Issue 13 targets</h3>" + _table(
            ["target", "value", "goal", "result"],
            [[k, v["value"], v["goal"], "met" if v["met"] else ("not measured" if v["value"] is None else "MISSED")]
             for k, v in ev["target_values"].items()]))
    return "".join(parts)


def _driver_cells(clone: dict, static: dict) -> list:
    """The declared per-driver measures (contract.metrics.DRIVER), the static frame's beside those that show it."""
    return [v for d in declared.DRIVER for v in ((clone.get(d.name), static.get(d.name)) if d.static_label else
                                        (clone.get(d.name),))]


def _texture_numbers(values: dict) -> str:
    """The measures declared to be shown with and without the mouth texture (contract.metrics TEXTURE), by label."""
    return ", ".join(f"{declared.BY_NAME[name].label} {values[name]}" for name in declared.TEXTURE
                     if values.get(name) is not None)
