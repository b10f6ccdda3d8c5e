"""The test suite's own promises: every package's doctests are collected, shared set-up is
copied rather than shared when tests write to it, and nothing is skipped behind one's back."""

import ast
import tomllib
from pathlib import Path

from tests.homes import mentions

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("driftctl", "drift", "training", "serving", "flows")


def test_every_package_with_doctests_is_collected():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in options["addopts"].split()
    with_doctests = {path.relative_to(ROOT).parts[0] for package in PACKAGES
                     for path in (ROOT / package).rglob("*.py") if ">>> " in path.read_text(encoding="utf-8")}
    assert "serving" in with_doctests  # serving/joiner.py: the unit test of late-label joining and eviction
    assert with_doctests <= set(options["testpaths"]), with_doctests - set(options["testpaths"])


def test_no_test_skips_itself():
    """A test that cannot run fails and says what is missing (`make test` installs chromium and,
    when no server answers, starts its own PostgreSQL): a green run means every test ran."""
    calls = []
    for path in (ROOT / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            skips_by_pytest = (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                               and node.value.id == "pytest"
                               and node.attr in ("skip", "skipif", "importorskip", "xfail"))
            skips_by_mark = (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                             and node.value.attr == "mark" and node.attr in ("skip", "skipif", "xfail"))
            if skips_by_pytest or skips_by_mark:
                calls.append(f"{path.name}:{node.lineno}")
    assert calls == []


def test_a_copied_home_never_points_at_its_template(champion_v1, tmp_path):
    from driftctl.settings import Settings
    from training.registry import Registry

    home = champion_v1.copy_to(tmp_path / "copy")
    assert mentions(home, str(champion_v1.home)) == []
    assert mentions(home, str(home))  # the paths were rewritten, not dropped
    registry = Registry.from_settings(Settings(home=home))
    champion = registry.champion()
    assert champion.version == 1 and registry.load(1).features  # its artifacts load from the copy
    artifacts = registry.client.get_run(champion.run_id).info.artifact_uri
    assert artifacts.startswith(home.as_uri()), artifacts
