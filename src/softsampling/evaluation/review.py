"""``review.html``: one self-contained page to accept or reject audit candidates.

Everything is inline (CSS, JavaScript, image crops as base64 JPEG data URIs),
so the page works opened straight from disk, with no server and no network.
Each card shows the candidate's box (red) with some context around it and the
image's annotated boxes (green). Keys: ``a`` accept, ``r`` reject, ``u`` undo,
arrow keys / ``j`` ``k`` move; a click on Accept / Reject does the same. The
Export button saves ``decisions.json``: ``{"format": "softsampling-audit-decisions",
"version": 1, "candidates_sha256", "decisions": [{"rank", "decision", "image_id",
"file_name", "category_id", "bbox"}]}`` (``decision`` is ``accept`` or ``reject``;
undecided candidates are left out), which ``softsampling audit-merge`` reads.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import numpy as np

from softsampling.structures.records import DetectionDataset

DECISIONS_FORMAT = "softsampling-audit-decisions"
CROP_SIZE = 192


def crop_data_uri(
    image: Any, box: np.ndarray, annotated: np.ndarray, *, context: float = 1.0, size: int = CROP_SIZE
) -> str:
    """A JPEG data URI of ``box`` (xyxy) in a PIL ``image`` with ``context`` box-sizes of margin on each side.

    The candidate is drawn in red, ``annotated`` boxes [n, 4] in green; the crop
    is scaled so that its longer side is ``size`` pixels.
    """
    from PIL import ImageDraw

    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    margin = max(context * max(w, h), 8.0)
    left, top = max(0, int(x1 - margin)), max(0, int(y1 - margin))
    right, bottom = min(image.width, int(np.ceil(x2 + margin))), min(image.height, int(np.ceil(y2 + margin)))
    right, bottom = max(right, left + 1), max(bottom, top + 1)
    crop = image.convert("RGB").crop((left, top, right, bottom))
    scale = size / max(crop.width, crop.height)
    crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))))
    draw = ImageDraw.Draw(crop)
    width = max(1, round(size / 96))
    for g in annotated:
        draw.rectangle(
            [(g[0] - left) * scale, (g[1] - top) * scale, (g[2] - left) * scale, (g[3] - top) * scale],
            outline=(0, 200, 0),
            width=width,
        )
    draw.rectangle(
        [(x1 - left) * scale, (y1 - top) * scale, (x2 - left) * scale, (y2 - top) * scale],
        outline=(255, 0, 0),
        width=width + 1,
    )
    buf = io.BytesIO()
    crop.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def review_items(
    gt: DetectionDataset, entries: list[dict[str, Any]], *, limit: int | None = None, context: float = 1.0
) -> list[dict[str, Any]]:
    """The page's items: each candidate entry (``candidates.json``) plus its crop; images opened once each."""
    from PIL import Image

    chosen = entries if limit is None else entries[:limit]
    row_of = {name: r for r, name in enumerate(gt.file_names)}
    by_row: dict[int, list[int]] = {}
    for k, e in enumerate(chosen):
        by_row.setdefault(row_of[e["file_name"]], []).append(k)
    items: list[dict[str, Any]] = [{} for _ in chosen]
    for row, ks in by_row.items():
        with Image.open(gt.image_path(row)) as image:
            image.load()
            annotated = gt.boxes_of(row)
            for k in ks:
                e = chosen[k]
                x, y, w, h = e["bbox"]
                items[k] = {
                    **e,
                    "crop": crop_data_uri(image, np.array([x, y, x + w, y + h]), annotated, context=context),
                }
    return items


def render_review_html(
    items: list[dict[str, Any]], class_names: dict[int, str], *, title: str, candidates_sha256: str, total: int
) -> str:
    """The page as one HTML string (``items`` from :func:`review_items`, best first)."""
    data = {
        "items": items,
        "classes": {str(k): v for k, v in class_names.items()},
        "candidates_sha256": candidates_sha256,
        "format": DECISIONS_FORMAT,
        "total": total,
    }
    payload = json.dumps(data, ensure_ascii=True, allow_nan=False).replace("</", "<\\/")
    return _PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", payload)


_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f4f4f4;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:8px 12px;
  display:flex;gap:14px;align-items:center;flex-wrap:wrap;z-index:2}
#grid{display:flex;flex-wrap:wrap;gap:10px;padding:12px}
.card{background:#fff;border:3px solid #ddd;border-radius:6px;padding:6px;width:200px;font-size:12px}
.card img{display:block;width:192px;height:auto;margin:auto}
.card.focus{border-color:#1a73e8}
.card.accept{background:#e3f6e3}.card.reject{background:#fbe4e4;opacity:.7}
.card .buttons{display:flex;gap:4px;margin-top:4px}.card button{flex:1}
.hidden{display:none}kbd{border:1px solid #aaa;border-radius:3px;padding:0 3px}
</style></head><body>
<header><strong>__TITLE__</strong>
<label>class <select id="cls"><option value="">all</option></select></label>
<span id="counts"></span>
<button id="export">Export decisions</button>
<span><kbd>a</kbd> accept <kbd>r</kbd> reject <kbd>u</kbd> undo <kbd>&larr;</kbd><kbd>&rarr;</kbd> move</span>
</header>
<div id="grid"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const decisions = {};
let focus = 0;
const grid = document.getElementById("grid"), cls = document.getElementById("cls");
Object.entries(DATA.classes).forEach(([id, name]) => {
  const o = document.createElement("option"); o.value = id; o.textContent = name; cls.appendChild(o);
});
const cards = DATA.items.map((it, i) => {
  const c = document.createElement("div");
  c.className = "card"; c.id = "c" + it.rank; c.dataset.rank = it.rank; c.dataset.cls = it.category_id;
  c.innerHTML = '<img alt="candidate ' + it.rank + '" src="' + it.crop + '">' +
    '<div>#' + it.rank + ' <b></b> score ' + it.score.toFixed(3) + '</div><div class="fn"></div>' +
    '<div class="buttons"><button class="acc">Accept</button><button class="rej">Reject</button></div>';
  c.querySelector("b").textContent = DATA.classes[String(it.category_id)] || String(it.category_id);
  c.querySelector(".fn").textContent = it.file_name;
  c.querySelector(".acc").addEventListener("click", e => { e.stopPropagation(); decide(i, "accept"); });
  c.querySelector(".rej").addEventListener("click", e => { e.stopPropagation(); decide(i, "reject"); });
  c.addEventListener("click", () => setFocus(i));
  grid.appendChild(c); return c;
});
function visible() { return cards.map((c, i) => i).filter(i => !cards[i].classList.contains("hidden")); }
function setFocus(i) {
  if (cards[focus]) cards[focus].classList.remove("focus");
  focus = i; if (cards[i]) { cards[i].classList.add("focus"); cards[i].scrollIntoView({block: "nearest"}); }
}
function move(step) {
  const v = visible(); if (!v.length) return;
  const at = v.indexOf(focus);
  setFocus(v[at < 0 ? 0 : Math.min(v.length - 1, Math.max(0, at + step))]);
}
function decide(i, what) {
  const it = DATA.items[i];
  if (what === null) delete decisions[it.rank]; else decisions[it.rank] = what;
  cards[i].classList.remove("accept", "reject"); if (what) cards[i].classList.add(what);
  setFocus(i); counts();
}
function counts() {
  const v = Object.values(decisions);
  document.getElementById("counts").textContent = DATA.items.length + " shown of " + DATA.total + " candidates; " +
    v.filter(d => d === "accept").length + " accepted, " + v.filter(d => d === "reject").length + " rejected";
}
cls.addEventListener("change", () => {
  cards.forEach(c => c.classList.toggle("hidden", cls.value !== "" && c.dataset.cls !== cls.value));
  const v = visible(); if (v.length) setFocus(v[0]);
});
document.addEventListener("keydown", e => {
  if (e.target.tagName === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key;
  if (k === "a") { decide(focus, "accept"); move(1); }
  else if (k === "r") { decide(focus, "reject"); move(1); }
  else if (k === "u") decide(focus, null);
  else if (k === "ArrowRight" || k === "ArrowDown" || k === "j") move(1);
  else if (k === "ArrowLeft" || k === "ArrowUp" || k === "k") move(-1);
  else return;
  e.preventDefault();
});
function exportDecisions() {
  const list = DATA.items.filter(it => it.rank in decisions).map(it => ({
    rank: it.rank, decision: decisions[it.rank], image_id: it.image_id, file_name: it.file_name,
    category_id: it.category_id, bbox: it.bbox}));
  return {format: DATA.format, version: 1, candidates_sha256: DATA.candidates_sha256, decisions: list};
}
document.getElementById("export").addEventListener("click", () => {
  const blob = new Blob([JSON.stringify(exportDecisions(), null, 1)], {type: "application/json"});
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob); a.download = "decisions.json";
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
});
if (cards.length) setFocus(0);
counts();
</script></body></html>
"""
