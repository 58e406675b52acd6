"""Debian's Chromium and its chromedriver, as the browser tests drive them.

``.ci/run`` installs both and sets ``NANO_REQUIRE_BROWSER=1``, so in CI a missing
browser fails the tests that need it instead of skipping them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HAVE_BROWSER = Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()
if not HAVE_BROWSER and os.environ.get("NANO_REQUIRE_BROWSER") == "1":
    raise RuntimeError("NANO_REQUIRE_BROWSER=1 but chromium or chromedriver is missing")


def driver(profile: Path, window: str, *flags: str, **capabilities: Any) -> Any:
    """Headless Chromium with a profile of its own, a window of ``window`` pixels
    ("1280,1400"), ``flags`` besides, and the ``capabilities`` given."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={window}",
        *flags,
    ):
        options.add_argument(flag)
    for name, value in capabilities.items():
        options.set_capability(name, value)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
