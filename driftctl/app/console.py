"""`driftctl console`: a small local web page, served on loopback, showing what `status`
shows: stage health, throughput and lag charts, the drift timeline, the champion and its
lineage, dead letters. Server-rendered HTML (readable without script) plus a small
script that polls `/api/status` and redraws; the standard library's HTTP server, no
front-end build.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import ipaddress
import json
import logging
import threading
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from driftctl.app.history import incident_steps
from driftctl.app.status import Probe, collect_status
from driftctl.settings import Settings, mask_url
from driftctl.stores.heartbeats import HealthStore
from driftctl.stores.ledger import Ledger

log = logging.getLogger(__name__)

SERIES_SECONDS = 300  # the charts show the last five minutes


def console_state(settings: Settings, now: float | None = None) -> dict[str, Any]:
    """`status`'s report plus the series the charts draw and the drift timeline."""
    now = time.time() if now is None else now
    state = collect_status(settings, now=now)
    state["series"], state["timeline"] = {}, []
    for incident in state["incidents"]:  # the incident timeline: one line per step
        incident["steps"] = [{"at": at, "step": step, "detail": detail}
                             for at, step, detail in incident_steps(incident)]
    if "ledger" not in state["unknown"]:  # the ledger answered status: read the charts, under the same deadline
        budget = settings.health.status_timeout
        series, why = Probe("console", lambda: _series_and_timeline(settings, now)).result(
            time.monotonic() + budget, budget)
        if why:
            state["errors"].append(f"console: {why}")
        else:
            state["series"], state["timeline"] = series
    state["refresh"] = settings.console.refresh
    return state


def _series_and_timeline(settings: Settings, now: float) -> tuple[dict[str, list], list[dict[str, Any]]]:
    series: dict[str, list] = {}
    timeline: list[dict[str, Any]] = []
    store = HealthStore(settings.ledger_url)
    try:
        for b in store.since(now - SERIES_SECONDS):
            if b.state != "running":
                continue
            key = f"{b.stage} {b.instance}"
            series.setdefault(key, []).append([round(b.at, 2), b.rps, b.lag])
    finally:
        store.close()
    ledger = Ledger(settings.ledger_url)
    try:
        for e in ledger.entries(limit=200):
            if e.kind == "drift_event":
                label = f"{e.payload.get('detector')} fired at record {e.payload.get('index')}"
            elif e.kind == "decision":
                label = f"decision {e.payload.get('action')}: {e.reason}"
            elif e.kind == "incident":
                label = f"incident {e.payload.get('incident')} opened: {e.reason}"
            elif e.kind == "incident_update":
                label = f"incident {e.payload.get('incident')}: {e.reason}"
            elif e.kind in ("promotion", "rollback"):
                label = f"{e.kind} to version {e.model_version}: {e.reason}"
            else:
                label = f"{e.kind}: {e.reason}"
            timeline.append({"at": e.at, "kind": e.kind, "label": mask_url(label), "event_id": e.event_id})
    finally:
        ledger.close()
    return series, timeline


def _throughput(state: dict[str, Any]) -> float:
    return sum(s["rps"] or 0 for s in state["stages"] if s["stage"] == "scorer" and s["health"] != "unknown")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _estimated(value: float | None) -> str:
    return "estimated: not available yet" if value is None else f"estimated {100 * value:.1f} %"


def render_page(state: dict[str, Any]) -> str:
    """The page, filled in on the server; the script then keeps it current."""
    e = html.escape
    champion = state.get("champion")
    version = str(champion["version"]) if champion else "unknown"
    rows = "".join(
        f"<tr class='{e(s['health'])}'><td>{e(s['stage'])}</td><td>{e(s['instance'])}</td>"
        f"<td class='health'>{e(s['health'])}</td><td>{e(s['reason'])}</td>"
        f"<td class='num'>{_number(s['rps'])}</td><td class='num'>{_number(s['lag'])}</td>"
        f"<td class='num'>{_number(s['dead_letters'])}</td></tr>"
        for s in state["stages"]) or "<tr><td colspan=7>no heartbeat recorded yet</td></tr>"
    dead = state["dead_letters"]
    accuracy = state.get("accuracy") or {}
    return PAGE.format(
        accuracy=_percent(accuracy.get("realised")), estimated=_estimated(accuracy.get("estimated")),
        health=e(state["health"]), home=e(state["home"]), version=e(version),
        model=e(f"{champion['name']} run {champion['run_id']}") if champion else "no champion (or MLflow unreachable)",
        why=e((champion or {}).get("reason") or "-"), throughput=f"{_throughput(state):,.0f}", rows=rows,
        dead="unknown" if dead["total"] is None else e(f"{dead['total']:,}"),
        state_json=json.dumps(state, default=str).replace("</", "<\\/"), refresh=int(state["refresh"] * 1000))


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
TOKEN_HEADER, TOKEN_COOKIE = "X-Driftctl-Token", "driftctl_console_token"


def is_loopback(host: str) -> bool:
    """Whether a listening address is loopback only.

    >>> [is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "192.168.1.4", "")]
    [True, True, True, False, False, False]
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str | None) -> str:
    """The name in a Host header, without its port: `[::1]:8765` -> `[::1]`, `localhost:1` -> `localhost`."""
    header = (header or "").strip().lower()
    if header.startswith("["):
        return header[:header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _Handler(BaseHTTPRequestHandler):
    server: ConsoleServer

    def _refusal(self) -> str | None:
        """Why this request is refused, or None. Without a token only loopback names are accepted in
        the Host header (a DNS-rebinding page names the attacker's domain); with a token every request
        must carry it, whatever the Host (/healthz excepted: it says nothing)."""
        token = self.server.token
        if token is None:
            if host_name(self.headers.get("Host")) not in LOOPBACK_NAMES:
                return "forbidden: the console answers loopback names only (localhost, 127.0.0.1, [::1])"
            return None
        if urlsplit(self.path).path == "/healthz":
            return None
        if not any(hmac.compare_digest(given.encode(), token.encode()) for given in self._tokens()):
            return "forbidden: this console needs its token (?token=, X-Driftctl-Token or Authorization: Bearer)"
        return None

    def _tokens(self) -> list[str]:
        given = parse_qs(urlsplit(self.path).query).get("token", [])
        given += [self.headers.get(TOKEN_HEADER) or ""]
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            given.append(auth[7:].strip())
        cookie = SimpleCookie()
        with contextlib.suppress(Exception):  # a malformed cookie header is no token, not an error
            cookie.load(self.headers.get("Cookie") or "")
        if TOKEN_COOKIE in cookie:
            given.append(cookie[TOKEN_COOKIE].value)
        return [g for g in given if g]

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        refused = self._refusal()
        if refused:
            self._send(403, "text/plain", refused.encode())
            return
        try:
            if path == "/":
                self._cookie = self.server.token if "token" in parse_qs(urlsplit(self.path).query) else None
                self._send(200, "text/html; charset=utf-8", render_page(console_state(self.server.settings)).encode())
            elif path == "/api/status":
                body = json.dumps(console_state(self.server.settings), default=str).encode()
                self._send(200, "application/json", body)
            elif path == "/healthz":
                self._send(200, "text/plain", b"ok")
            else:
                self._send(404, "text/plain", b"not found")
        except Exception as exc:  # the page says what failed; the server keeps serving
            log.exception("console request failed")
            self._send(500, "text/plain", mask_url(f"driftctl console: {exc}").encode())

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if getattr(self, "_cookie", None):  # the page's own polls of /api/status carry the token back
            self.send_header("Set-Cookie", f"{TOKEN_COOKIE}={self._cookie}; HttpOnly; SameSite=Strict; Path=/")
            self._cookie = None
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per poll is noise
        log.debug("console: " + format, *args)


class ConsoleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, settings: Settings, host: str | None = None, port: int | None = None,
                 token: str | None = None):
        self.settings = settings
        secret = settings.console.token
        self.token = token or (secret.get_secret_value() if secret else None) or None
        host = host or settings.console.host
        if not is_loopback(host) and not self.token:
            raise ValueError(f"the console on {host} (not loopback) needs a token: --token or DRIFTCTL_CONSOLE__TOKEN")
        super().__init__((host or settings.console.host, settings.console.port if port is None else port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> ConsoleServer:
        self._thread = threading.Thread(target=self.serve_forever, name="console", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>driftctl console</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.2em 2em; color: #222; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 15px; margin: 1.2em 0 .4em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.badge {{ padding: 2px 8px; border-radius: 4px; color: #fff; background: #888; }}
.healthy .health, .badge.healthy {{ color: #fff; background: #2a7; }}
.warning .health, .badge.warning {{ background: #e90; color: #fff; }}
.critical .health, .badge.critical {{ background: #d33; color: #fff; }} .unknown .health {{ color: #888; }}
.cards {{ display: flex; gap: 2em; }} .card {{ border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; }}
.big {{ font-size: 26px; font-weight: 600; }} svg {{ border: 1px solid #eee; background: #fcfcfc; }}
h3.incident {{ font-size: 14px; margin: .8em 0 .2em; }} td.step {{ font-weight: 600; white-space: nowrap; }}
.drift {{ color: #d33; }} .stable {{ color: #2a7; }} .quiet {{ color: #888; }} small {{ color: #777; }}
</style></head><body>
<h1>driftctl <span id="health" class="badge {health}">{health}</span> <small id="home">{home}</small></h1>
<div class="cards">
 <div class="card">champion version<div class="big" id="champion-version">{version}</div>
  <small id="champion-model">{model}</small><br><small id="champion-why">{why}</small></div>
 <div class="card">champion accuracy<div class="big" id="accuracy">{accuracy}</div>
  <small id="estimated">{estimated}</small><br><small>realised, recent labelled records</small></div>
 <div class="card">scoring records/s<div class="big" id="throughput">{throughput}</div></div>
 <div class="card">dead letters<div class="big" id="dead-letters">{dead}</div></div>
 <div class="card">updated<div class="big" id="updated">-</div></div>
</div>
<h2>incidents <small>one per drift: its events, decisions, retrain, outcome and probation</small></h2>
<div id="incidents"></div>
<h2>stages</h2>
<table id="stages"><thead><tr><th>stage</th><th>instance</th><th>health</th><th>reason</th><th>records/s</th>
<th>lag</th><th>dead letters</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>throughput (records/s) and lag (records), up to the last five minutes</h2>
<svg id="chart-rps" width="520" height="160"></svg> <svg id="chart-lag" width="520" height="160"></svg>
<div id="legend"></div>
<h2>drift</h2><table id="drift"><tbody></tbody></table>
<h2>lineage</h2><table id="lineage"><tbody></tbody></table>
<h2>timeline</h2><svg id="chart-timeline" width="1060" height="60"></svg><table id="timeline"><tbody></tbody></table>
<div id="errors" style="color:#b60"></div>
<script id="initial" type="application/json">{state_json}</script>
<script>
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
const fmt = (x) => x === null || x === undefined ? "-" : Math.round(x).toLocaleString("en");
const when = (t) => new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
function cell(row, text, cls) {{
  const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; }}
function fill(id, rows) {{
  const body = document.querySelector(id + " tbody"); body.innerHTML = "";
  for (const r of rows) {{ const tr = body.insertRow(); if (r.cls) tr.className = r.cls;
    r.cells.forEach((c, i) => cell(tr, c, (r.num || []).includes(i) ? "num" : (r.cellCls || [])[i])); }}
}}
function chart(id, series, pick, now) {{
  const svg = document.getElementById(id), W = svg.width.baseVal.value, H = svg.height.baseVal.value;
  let max = 1, first = now;
  for (const pts of Object.values(series)) for (const p of pts) {{
    max = Math.max(max, pick(p) || 0); first = Math.min(first, p[0]); }}
  const span = Math.min(300, Math.max(30, now - first));
  let out = `<text x="4" y="12" font-size="10">${{fmt(max)}}</text><text x="4" y="${{H - 3}}" font-size="10">0</text>` +
    `<text x="${{W - 4}}" y="${{H - 3}}" font-size="10" text-anchor="end">last ${{Math.round(span)}} s</text>`;
  Object.entries(series).forEach(([name, pts], i) => {{
    const xy = pts.filter(p => pick(p) !== null).map(p =>
      `${{(W * (1 - (now - p[0]) / span)).toFixed(1)}},${{(H - 4 - (H - 16) * pick(p) / max).toFixed(1)}}`);
    if (xy.length) out += `<polyline fill="none" stroke="${{COLOURS[i % COLOURS.length]}}" stroke-width="1.5" ` +
      `points="${{xy.join(" ")}}"/>`;
  }});
  svg.innerHTML = out;
}}
function draw(s) {{
  const badge = document.getElementById("health");
  badge.textContent = s.health; badge.className = "badge " + s.health;
  document.getElementById("champion-version").textContent = s.champion ? String(s.champion.version) : "unknown";
  document.getElementById("champion-model").textContent = s.champion ?
    `${{s.champion.name}} run ${{s.champion.run_id}}` : "no champion (or MLflow unreachable)";
  document.getElementById("champion-why").textContent = s.champion ? (s.champion.reason || "-") : "";
  const rps = s.stages.filter(x => x.stage === "scorer" && x.health !== "unknown")
    .reduce((a, x) => a + (x.rps || 0), 0);
  document.getElementById("throughput").textContent = fmt(rps);
  const acc = s.accuracy || {{}}, pct = (x) => x === null || x === undefined ? "-" : (100 * x).toFixed(1) + " %";
  document.getElementById("accuracy").textContent = pct(acc.realised);
  document.getElementById("estimated").textContent = acc.estimated === null || acc.estimated === undefined
    ? "estimated: not available yet" : "estimated " + pct(acc.estimated);
  const box = document.getElementById("incidents"); box.innerHTML = "";
  if (!s.incidents.length) box.textContent = "no drift recorded";
  for (const i of s.incidents.slice().reverse()) {{
    const h = document.createElement("h3"); h.className = "incident";
    h.textContent = `${{when(i.opened_at)}}  incident ${{i.id.replace("incident-", "")}}: ` +
      `${{i.state}}${{i.id === s.open_incident ? " (open)" : ""}}`;
    const t = document.createElement("table"); t.className = "incident-steps";
    t.appendChild(document.createElement("tbody"));
    for (const st of i.steps) {{ const tr = t.tBodies[0].insertRow();
      cell(tr, st.at ? when(st.at).slice(11) : ""); cell(tr, st.step, "step"); cell(tr, st.detail); }}
    box.appendChild(h); box.appendChild(t);
  }}
  document.getElementById("dead-letters").textContent = s.dead_letters.total === null
    ? "unknown" : fmt(s.dead_letters.total);
  document.getElementById("updated").textContent = when(s.at).slice(11);
  fill("#stages", s.stages.map(x => ({{cls: x.health,
    cells: [x.stage, x.instance, x.health, x.reason, fmt(x.rps), fmt(x.lag), fmt(x.dead_letters)],
    num: [4, 5, 6], cellCls: [null, null, "health"]}})));
  chart("chart-rps", s.series, p => p[1], s.at); chart("chart-lag", s.series, p => p[2], s.at);
  document.getElementById("legend").innerHTML = "";
  Object.keys(s.series).forEach((name, i) => {{ const span = document.createElement("span");
    span.textContent = "\u25A0 " + name + "  "; span.style.color = COLOURS[i % COLOURS.length];
    document.getElementById("legend").appendChild(span); }});
  fill("#drift", s.drift.map(d => ({{cells: [d.detector, d.state, `${{d.events}} event(s)`, d.last_event ?
    `last ${{when(d.last_event.at)}} at record ${{d.last_event.index}}: ` +
    `${{Number(d.last_event.statistic).toPrecision(3)}} vs ${{Number(d.last_event.threshold).toPrecision(3)}}` :
    "never fired"], cellCls: [null, d.state]}})));
  fill("#lineage", s.lineage.map(l => ({{cells: [when(l.at), `${{l.kind}} v${{l.version}}`,
    l.previous ? `from v${{l.previous}}` : "first", l.run_id || "-", l.reason || "-"]}})));
  fill("#timeline", s.timeline.slice(0, 15).map(t => ({{cells: [when(t.at), t.kind, t.label]}})));
  const tl = document.getElementById("chart-timeline"), W = tl.width.baseVal.value;
  const ts = s.timeline.map(t => t.at), lo = Math.min(...ts, s.at - 60), hi = s.at;
  tl.innerHTML = s.timeline.map(t => {{ const x = (8 + (W - 16) * (t.at - lo) / Math.max(hi - lo, 1)).toFixed(1);
    const c = t.kind === "drift_event" || t.kind === "incident" ? "#d33" : t.kind === "incident_update" ? "#e77"
      : t.kind === "promotion" ? "#2a7" : t.kind === "failure" ? "#e90" : "#888";
    return `<line x1="${{x}}" x2="${{x}}" y1="${{t.kind === "decision" ? 30 : 8}}" y2="52" stroke="${{c}}" ` +
      `stroke-width="2"><title>${{when(t.at)}} ${{t.label.replace(/[<&]/g, "")}}</title></line>`; }}).join("");
  document.getElementById("errors").textContent = s.errors.join(" | ");
}}
draw(JSON.parse(document.getElementById("initial").textContent));
async function poll() {{
  try {{ const r = await fetch("/api/status", {{cache: "no-store"}}); if (r.ok) draw(await r.json()); }}
  catch (e) {{ document.getElementById("errors").textContent = "console unreachable: " + e; }}
  setTimeout(poll, {refresh});
}}
setTimeout(poll, {refresh});
</script></body></html>
"""
