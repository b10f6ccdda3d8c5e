"""`driftctl console`: a small local web page, served on loopback, showing what `status`
shows: stage health, throughput and lag charts, the drift timeline, the champion and its
lineage, dead letters. Server-rendered HTML (readable without script) plus a small
script that polls `/api/status` and redraws; the standard library's HTTP server, no
front-end build. The page is package data beside this module: `console.html` (a
`string.Template`, its values HTML-escaped here, the state embedded as a JSON blob),
`console.css` and `console.js` (served as they are).
"""

from __future__ import annotations

import functools
import html
import json
import logging
import string
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from driftctl.app.status import collect_status
from driftctl.settings import Settings
from driftctl.stores.heartbeats import HealthStore
from driftctl.stores.ledger import Ledger

log = logging.getLogger(__name__)

SERIES_SECONDS = 300  # the charts show the last five minutes
STATIC = {"/static/console.css": ("console.css", "text/css; charset=utf-8"),
          "/static/console.js": ("console.js", "text/javascript; charset=utf-8")}


@functools.cache
def asset(name: str) -> str:
    """A file shipped beside this module (package data), read once."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def script_json(value: Any) -> str:
    """JSON that is safe inside a `<script type="application/json">` element: no `<`, `>` or
    `&` survives as itself, so no value can close the element or open a comment.

    >>> print(script_json({"reason": "</script><b>", "n": 1}))
    {"reason": "\\u003c/script\\u003e\\u003cb\\u003e", "n": 1}
    """
    text = json.dumps(value, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def console_state(settings: Settings, now: float | None = None) -> dict[str, Any]:
    """`status`'s report plus the series the charts draw and the drift timeline."""
    now = time.time() if now is None else now
    state = collect_status(settings, now=now)
    state["series"], state["timeline"] = {}, []
    try:
        store = HealthStore(settings.ledger_url)
        try:
            for b in store.since(now - SERIES_SECONDS):
                if b.state != "running":
                    continue
                key = f"{b.stage} {b.instance}"
                state["series"].setdefault(key, []).append([round(b.at, 2), b.rps, b.lag])
        finally:
            store.close()
        ledger = Ledger(settings.ledger_url)
        try:
            for e in ledger.entries(limit=200):
                if e.kind == "drift_event":
                    label = f"{e.payload.get('detector')} fired at record {e.payload.get('index')}"
                elif e.kind == "decision":
                    label = f"decision {e.payload.get('action')}: {e.reason}"
                elif e.kind in ("promotion", "rollback"):
                    label = f"{e.kind} to version {e.model_version}: {e.reason}"
                else:
                    label = f"{e.kind}: {e.reason}"
                state["timeline"].append({"at": e.at, "kind": e.kind, "label": label, "event_id": e.event_id})
        finally:
            ledger.close()
    except Exception as exc:
        state["errors"].append(f"console: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    state["refresh"] = settings.console.refresh
    return state


def _throughput(state: dict[str, Any]) -> float:
    return sum(s["rps"] or 0 for s in state["stages"] if s["stage"] == "scorer" and s["health"] != "unknown")


def _number(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


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
    values = {
        "health": state["health"], "home": state["home"], "version": version,
        "model": f"{champion['name']} run {champion['run_id']}" if champion else "no champion (or MLflow unreachable)",
        "why": (champion or {}).get("reason") or "-", "throughput": f"{_throughput(state):,.0f}",
        "dead": "unknown" if dead["total"] is None else f"{dead['total']:,}",
    }
    page = string.Template(asset("console.html"))
    return page.substitute({k: e(str(v)) for k, v in values.items()}, rows=rows, state_json=script_json(state))


class _Handler(BaseHTTPRequestHandler):
    server: ConsoleServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/":
                self._send(200, "text/html; charset=utf-8", render_page(console_state(self.server.settings)).encode())
            elif path == "/api/status":
                body = json.dumps(console_state(self.server.settings), default=str).encode()
                self._send(200, "application/json", body)
            elif path in STATIC:
                name, content_type = STATIC[path]
                self._send(200, content_type, asset(name).encode())
            elif path == "/healthz":
                self._send(200, "text/plain", b"ok")
            else:
                self._send(404, "text/plain", b"not found")
        except Exception as exc:  # the page says what failed; the server keeps serving
            log.exception("console request failed")
            self._send(500, "text/plain", f"driftctl console: {exc}".encode())

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # quiet: one line per poll is noise
        log.debug("console: " + format, *args)


class ConsoleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, settings: Settings, host: str | None = None, port: int | None = None):
        self.settings = settings
        super().__init__((host or settings.console.host, settings.console.port if port is None else port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> ConsoleServer:
        self._thread = threading.Thread(target=self.serve_forever, name="console", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
