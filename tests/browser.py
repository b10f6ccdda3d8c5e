"""Headless Chromium for the tests that look at a UI: Debian's chromium (`make chromium`),
driven by Playwright, which never downloads a browser here."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: `make chromium` (part of `make test`) installs it")


def screenshots(pages: list[tuple[str, str, list[str]]], directory: Path) -> list[Path]:
    """Each page `(file name, url, texts it must show)` opened, awaited and saved as a PNG in
    `directory`; SAVE_SCREENS=DIR copies them there too (the README's pictures)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for name, url, wanted in pages:
                page.goto(url, wait_until="domcontentloaded", timeout=90_000)
                for text in wanted:
                    page.get_by_text(text, exact=False).first.wait_for(timeout=90_000)
                page.wait_for_timeout(1500)  # charts and fonts settle
                path = directory / name
                page.screenshot(path=str(path), full_page=True)
                saved.append(path)
        finally:
            browser.close()
    target = os.environ.get("SAVE_SCREENS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for path in saved:
            shutil.copy(path, Path(target) / path.name)
    return saved
