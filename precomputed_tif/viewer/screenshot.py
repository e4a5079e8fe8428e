"""``precomputed-screenshot``: render a Neuroglancer view to a PNG, headless.

The view is opened in the Neuroglancer client that the ``neuroglancer``
Python package ships and serves itself (no internet needed), in Debian's
Chromium driven by Selenium; Neuroglancer's own screenshot call waits until
every visible chunk has loaded before it captures.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.parse

from ..errors import PrecomputedTifError

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-unsafe-swiftshader", "--window-size=1200,900",
)


def state_from_url(url: str) -> dict:
    """A viewer state from a Neuroglancer link (``...#!{json}``) or from a bare ``precomputed://`` source."""
    if "#!" in url:
        fragment = urllib.parse.unquote(url.split("#!", 1)[1])
        try:
            state = json.loads(fragment)
        except ValueError:
            raise PrecomputedTifError("the link's state (after #!) is not valid JSON") from None
        if not isinstance(state, dict):
            raise PrecomputedTifError("the link's state (after #!) is not a Neuroglancer state")
        return state
    if url.startswith("precomputed://"):
        return {"layers": [{"type": "auto", "source": url, "name": "data"}], "layout": "xy"}
    raise PrecomputedTifError(
        f"{url[:80]!r} is neither a Neuroglancer link (with #!) nor a precomputed:// source")


class Browser:
    """A local Neuroglancer viewer and a headless Chromium showing it. Use as a context manager."""

    def __init__(self, width: int = 1200, height: int = 900):
        try:
            import neuroglancer
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError as exc:
            raise PrecomputedTifError(
                f"screenshots need the neuroglancer and selenium packages ({exc.name} is missing): "
                "pip install 'precomputed-tif[view]'") from None
        for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
            if not os.path.exists(path):
                raise PrecomputedTifError(
                    f"{path} is missing: install Debian's chromium and chromium-driver (apt-get install {package})")
        neuroglancer.set_server_bind_address("127.0.0.1")
        self.neuroglancer = neuroglancer
        self.viewer = neuroglancer.Viewer()
        self.profile = tempfile.mkdtemp(prefix="pt-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--window-size={width},{height}")
        options.add_argument(f"--user-data-dir={self.profile}")
        try:
            # The driver is named explicitly: left to itself Selenium tries to download one.
            self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        except Exception as exc:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise PrecomputedTifError(f"cannot start headless Chromium ({str(exc).splitlines()[0]})") from None
        self.driver.get(self.viewer.get_viewer_url())

    def show(self, state: dict) -> None:
        """Replace the viewer's state."""
        self.viewer.set_state(self.neuroglancer.ViewerState(state))

    def screenshot(self, width: int, height: int, timeout: float = 120) -> bytes:
        """PNG of the viewer panels once every visible chunk has loaded."""
        import threading

        result = {}

        def capture():
            try:
                result["png"] = self.viewer.screenshot(size=[width, height]).screenshot.image
            except Exception as exc:  # reported below
                result["error"] = exc

        worker = threading.Thread(target=capture, daemon=True)
        worker.start()
        worker.join(timeout)
        if "png" not in result:
            raise PrecomputedTifError(f"Neuroglancer did not finish rendering within {timeout:g} s"
                                      + (f" ({result['error']})" if "error" in result else ""))
        return result["png"]

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def screenshot(url: str, out: str, width: int = 1200, height: int = 900) -> None:
    """Render the view of a Neuroglancer link (or a precomputed:// source) to ``out`` (PNG)."""
    state = state_from_url(url)
    with Browser(width, height) as browser:
        browser.show(state)
        png = browser.screenshot(width, height)
    with open(out, "wb") as f:
        f.write(png)
