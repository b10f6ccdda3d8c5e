"""The console's page without a browser: the template and its assets are package data, the
server fills in escaped values and a JSON blob no value can break out of. (The page in a
real browser against a running pipeline: tests/test_operator.py.)"""

import json
import re
import tomllib
import urllib.request
from fnmatch import fnmatch
from pathlib import Path

from driftctl.app.console import ConsoleServer, asset, render_page
from driftctl.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "</script><script>alert(1)</script> & <!-- {x} {{y}} $z ${w}"


def state(**changes):
    base = {"home": "/srv/driftctl", "health": "warning", "at": 1_800_000_000.0, "refresh": 1.5,
            "champion": {"name": "m", "version": 3, "run_id": "abc", "reason": HOSTILE, "promoted_at": 1.0},
            "stages": [{"stage": "scorer", "instance": "a", "health": "healthy", "reason": HOSTILE, "rps": 1234.4,
                        "lag": 7, "dead_letters": 0}],
            "dead_letters": {"total": 12_345, "rate": 0.0}, "drift": [], "decisions": [], "lineage": [],
            "series": {}, "timeline": [{"at": 1.0, "kind": "failure", "label": HOSTILE, "event_id": None}],
            "errors": []}
    return {**base, **changes}


def test_the_page_is_filled_in_escaped_and_carries_the_state_as_json():
    page = render_page(state())
    assert "<title>driftctl console</title>" in page and "$health" not in page and "$state_json" not in page
    assert '<span id="health" class="badge warning">warning</span>' in page
    assert '<div class="big" id="champion-version">3</div>' in page
    assert '<div class="big" id="throughput">1,234</div>' in page
    assert '<div class="big" id="dead-letters">12,345</div>' in page
    assert "m run abc" in page and "/srv/driftctl" in page
    assert "alert(1)" in page and "<script>alert" not in page  # shown as text, never as markup
    blob = re.search(r'<script id="initial" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert "<" not in blob and ">" not in blob and "&" not in blob
    assert json.loads(blob) == json.loads(json.dumps(state()))  # the script draws from exactly the state
    assert page.count("<script") == 2  # the blob and console.js: nothing a value injected


def test_an_empty_pipeline_renders_too():
    page = render_page(state(champion=None, stages=[], dead_letters={"total": None, "rate": None}))
    assert ">unknown</div>" in page and "no champion (or MLflow unreachable)" in page
    assert "no heartbeat recorded yet" in page


def test_the_server_serves_the_page_assets(tmp_path):
    server = ConsoleServer(Settings(home=tmp_path / "home"), "127.0.0.1", 0).start()
    try:
        for path, kind, text in (("static/console.js", "text/javascript", "/api/status"),
                                 ("static/console.css", "text/css", ".badge"), ("healthz", "text/plain", "ok")):
            with urllib.request.urlopen(server.url + path, timeout=10) as response:
                assert response.status == 200 and response.headers["Content-Type"].startswith(kind)
                assert text in response.read().decode()
        try:
            urllib.request.urlopen(server.url + "static/../console.py", timeout=10)
            raise AssertionError("served a file that is not an asset")
        except urllib.error.HTTPError as error:
            assert error.code == 404
    finally:
        server.stop()
    assert "setTimeout(poll" in asset("console.js") and "refresh" in asset("console.js")


def test_every_package_and_every_page_file_is_in_the_distribution():
    """A wheel holds what pyproject lists: each subpackage (driftctl.app, .stores, .runtime) and
    each non-Python file beside a module (the console's page) must be matched there."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    include, data = setuptools["packages"]["find"]["include"], setuptools["package-data"]
    for top in ("driftctl", "drift", "training", "serving", "flows"):
        for init in (ROOT / top).rglob("__init__.py"):
            package = ".".join(init.parent.relative_to(ROOT).parts)
            assert any(fnmatch(package, pattern) for pattern in include), f"{package} is left out of the wheel"
            # What a Cython source builds in place (its C file, the extension) is the build's, not package data.
            built = {p.stem for p in init.parent.glob("*.pyx")}
            files = [p.name for p in init.parent.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc")
                     and not (p.suffix in (".c", ".so") and p.name.split(".")[0] in built)]
            missing = [f for f in files if not any(fnmatch(f, pattern) for pattern in data.get(package, []))]
            assert missing == [], f"{package}: {missing} are not package data"
