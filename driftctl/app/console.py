"""`driftctl console`: a small local web page, served on loopback, showing what `status`
shows: stage health, throughput and lag charts, the drift timeline, the champion and its
lineage, dead letters. Server-rendered HTML (readable without script) plus a small
script that polls `/api/status` and redraws; the standard library's HTTP server, no
front-end build. The page is package data beside this module: `console.html` (a
`string.Template`, its values HTML-escaped here, the state embedded as a JSON blob),
`console.css` and `console.js` (served as they are).
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import html
import ipaddress
import json
import logging
import string
import threading
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from driftctl.app.history import incident_steps
from driftctl.app.status import Probe, collect_status
from driftctl.settings import Settings, mask_url
from driftctl.stores.heartbeats import HealthStore
from driftctl.stores.ledger import ALIAS_MOVES, Ledger

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
    store = HealthStore.from_settings(settings)
    try:
        for b in store.since(now - SERIES_SECONDS):
            if b.state != "running":
                continue
            key = f"{b.stage} {b.instance}"
            series.setdefault(key, []).append([round(b.at, 2), b.rps, b.lag])
    finally:
        store.close()
    ledger = Ledger.from_settings(settings)
    try:
        for e in ledger.entries(limit=200):
            if e.kind == "intent":  # a champion change's bookkeeping: its promotion or rollback is shown
                continue
            if e.kind == "drift_event":
                label = f"{e.payload.get('detector')} fired at record {e.payload.get('index')}"
            elif e.kind == "decision":
                label = f"decision {e.payload.get('action')}: {e.reason}"
            elif e.kind == "incident":
                label = f"incident {e.payload.get('incident')} opened: {e.reason}"
            elif e.kind == "incident_update":
                label = f"incident {e.payload.get('incident')}: {e.reason}"
            elif e.kind in ALIAS_MOVES:
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
    values = {
        "health": state["health"], "home": state["home"], "version": version,
        "model": f"{champion['name']} run {champion['run_id']}" if champion else "no champion (or MLflow unreachable)",
        "why": (champion or {}).get("reason") or "-", "throughput": f"{_throughput(state):,.0f}",
        "dead": "unknown" if dead["total"] is None else f"{dead['total']:,}",
        "accuracy": _percent(accuracy.get("realised")), "estimated": _estimated(accuracy.get("estimated")),
    }
    page = string.Template(asset("console.html"))
    return page.substitute({k: e(str(v)) for k, v in values.items()}, rows=rows, state_json=script_json(state))


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
            elif path in STATIC:
                name, content_type = STATIC[path]
                self._send(200, content_type, asset(name).encode())
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
