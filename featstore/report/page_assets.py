"""The HTML report's inline style and script (the project's own, no library, works offline).

The script makes every ``table.sortable`` sort by a click on a header (numbers by their
``data-v`` value, text otherwise; blank cells last; a second click reverses) and every
``input.filter`` filter the rows of its ``data-table`` (all words must appear in a row).
The state lives in the address's fragment, ``#sort=TABLE:COL:asc|desc&filter=TABLE:words``,
so a sorted, filtered view can be bookmarked or shared, and a test can open one. It never
writes a page value as HTML (``textContent`` only), so names in the tables stay text.
After the load event, ``body[data-load-ms]`` holds the milliseconds from navigation to a
laid-out page (read by ``benchmarks/report_page.py``).
"""

from __future__ import annotations

__all__ = ["SCRIPT", "STYLE"]

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1600px}
table{border-collapse:collapse;margin:0.6em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:bold;background:#e6f4ea}
tr.baseline td{background:#fff8e1}
.rer{color:#666;font-size:11px}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
table.sortable th{cursor:pointer;user-select:none;background:#f6f6f6}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2";font-size:9px}
table.sortable th[aria-sort=descending]::after{content:" \\25BC";font-size:9px}
input.filter{margin:0.4em 0;padding:3px 6px;width:24em}
.count{color:#666;font-size:12px;margin-left:1em}
details{margin:0.5em 0}
summary{cursor:pointer;font-weight:600}
.figures{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.figures figure{margin:0;flex:0 1 auto;max-width:100%}
.finding{font-size:15px;background:#f3f7fc;border-left:4px solid #3b78c4;padding:0.5em 1em}
.note{color:#555;font-size:12px}
"""

SCRIPT = r"""
(function () {
  "use strict";
  function tableById(id) { var t = document.getElementById(id); return t && t.tBodies[0] ? t : null; }
  function cellValue(row, col) {
    var c = row.cells[col];
    if (!c) return { blank: true };
    var v = c.getAttribute("data-v");
    if (v !== null) return v === "" ? { blank: true } : { num: parseFloat(v) };
    var t = c.textContent.trim();
    return t === "" ? { blank: true } : { text: t.toLowerCase() };
  }
  function sortTable(t, col, desc) {
    var body = t.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (r) { return { r: r, v: cellValue(r, col) }; });
    keyed.sort(function (a, b) {
      if (a.v.blank || b.v.blank) {
        if (a.v.blank && b.v.blank) return a.r._i - b.r._i;
        return a.v.blank ? 1 : -1;
      }
      var d;
      if (a.v.num !== undefined && b.v.num !== undefined) d = a.v.num - b.v.num;
      else {
        var x = a.v.num !== undefined ? String(a.v.num) : a.v.text;
        var y = b.v.num !== undefined ? String(b.v.num) : b.v.text;
        d = x < y ? -1 : x > y ? 1 : 0;
      }
      if (desc) d = -d;
      return d !== 0 ? d : a.r._i - b.r._i;
    });
    var frag = document.createDocumentFragment();
    keyed.forEach(function (k) { frag.appendChild(k.r); });
    body.appendChild(frag);
    var ths = t.tHead ? t.tHead.rows[0].cells : [];
    for (var i = 0; i < ths.length; i++) ths[i].removeAttribute("aria-sort");
    if (ths[col]) ths[col].setAttribute("aria-sort", desc ? "descending" : "ascending");
    t._sort = [col, desc];
  }
  function filterTable(t, text) {
    var words = text.toLowerCase().split(/\s+/).filter(function (w) { return w; });
    var rows = t.tBodies[0].rows, shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (r._text === undefined) r._text = r.textContent.toLowerCase();
      var ok = words.every(function (w) { return r._text.indexOf(w) >= 0; });
      r.style.display = ok ? "" : "none";
      if (ok) shown++;
    }
    t._filter = text;
    var count = document.querySelector('.count[data-table="' + t.id + '"]');
    if (count) count.textContent = shown + " of " + rows.length + " rows";
  }
  function saveState() {
    var parts = [];
    document.querySelectorAll("table.sortable").forEach(function (t) {
      if (t._sort) parts.push("sort=" + encodeURIComponent(t.id + ":" + t._sort[0] + ":" + (t._sort[1] ? "desc" : "asc")));
      if (t._filter) parts.push("filter=" + encodeURIComponent(t.id + ":" + t._filter));
    });
    try { history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname + location.search); } catch (e) {}
  }
  function applyHash() {
    var hash = location.hash.replace(/^#/, "");
    if (!hash) return;
    hash.split("&").forEach(function (part) {
      var eq = part.indexOf("=");
      if (eq < 0) return;
      var kind = part.slice(0, eq), value;
      try { value = decodeURIComponent(part.slice(eq + 1)); } catch (e) { return; }
      var colon = value.indexOf(":");
      var t = tableById(value.slice(0, colon));
      if (colon < 0 || !t) return;
      var rest = value.slice(colon + 1);
      if (kind === "sort") {
        var bits = rest.split(":");
        var col = parseInt(bits[0], 10);
        if (!isNaN(col)) sortTable(t, col, bits[1] === "desc");
      } else if (kind === "filter") {
        filterTable(t, rest);
        var input = document.querySelector('input.filter[data-table="' + t.id + '"]');
        if (input) input.value = rest;
        var det = t.closest("details");
        if (det) det.open = true;
      }
    });
  }
  function setup() {
    document.querySelectorAll("table.sortable").forEach(function (t) {
      if (!t.tBodies[0]) return;
      var rows = t.tBodies[0].rows;
      for (var i = 0; i < rows.length; i++) rows[i]._i = i;
      var ths = t.tHead ? t.tHead.rows[0].cells : [];
      Array.prototype.forEach.call(ths, function (th, col) {
        th.title = "sort by this column";
        th.addEventListener("click", function () {
          var desc = t._sort && t._sort[0] === col ? !t._sort[1] : th.classList.contains("desc-first");
          sortTable(t, col, desc);
          saveState();
        });
      });
    });
    document.querySelectorAll("input.filter").forEach(function (input) {
      var t = tableById(input.getAttribute("data-table"));
      if (!t) return;
      var timer = null;
      input.addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(function () { filterTable(t, input.value); saveState(); }, 120);
      });
    });
    applyHash();
  }
  window.addEventListener("load", function () {
    setup();
    void document.body.offsetHeight;  // lay the page out before taking the time
    document.body.setAttribute("data-load-ms", String(Math.round(performance.now())));
  });
})();
"""
