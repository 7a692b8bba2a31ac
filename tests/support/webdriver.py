"""Headless Chromium driven through chromedriver's W3C WebDriver protocol.

A few JSON requests over loopback HTTP are all the tests need (open a page,
find elements, click, type, read text, take a screenshot), so there is no
client library, and nothing is ever downloaded: the browser and the driver are
Debian's ``chromium`` and ``chromium-driver`` packages, found on the path or in
/usr/bin. ``available()`` says whether both are there. Chromium runs with a
fresh profile and its background networking, updates and sync turned off.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from .scripted import free_port

__all__ = ["Browser", "WebDriverError", "available", "chromedriver", "chromium"]

#: The key under which WebDriver returns an element reference.
_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
#: Chromium's flags: headless, and nothing that talks to the network by itself.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--window-size=1280,900",
)


class WebDriverError(AssertionError):
    """The driver refused a command (its error and message)."""


def chromium() -> str | None:
    return shutil.which("chromium") or _file("/usr/bin/chromium")


def chromedriver() -> str | None:
    return shutil.which("chromedriver") or _file("/usr/bin/chromedriver")


def _file(path: str) -> str | None:
    return path if Path(path).is_file() else None


def available() -> bool:
    """Whether headless Chromium and its driver are installed."""
    return chromium() is not None and chromedriver() is not None


class Browser:
    """One headless Chromium session; a context manager that ends it and the
    driver, and removes the profile."""

    def __init__(self, timeout: float = 30) -> None:
        self.timeout = timeout
        self._driver: subprocess.Popen[bytes] | None = None
        self._profile = tempfile.TemporaryDirectory(prefix="mailstrom-chromium-")
        self._base = ""
        self._session = ""

    def start(self) -> Browser:
        binary, driver = chromium(), chromedriver()
        assert binary is not None and driver is not None, "chromium is not installed"
        port = free_port()
        self._driver = subprocess.Popen(
            [driver, f"--port={port}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._base = f"http://127.0.0.1:{port}"
        self._wait_for_driver()
        args = [*FLAGS, f"--user-data-dir={self._profile.name}"]
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": args},
        }
        answer = self._call(
            "POST", "/session", {"capabilities": {"alwaysMatch": capabilities}}
        )
        self._session = answer["sessionId"]
        self._command(
            "POST",
            "/timeouts",
            {
                "implicit": int(self.timeout * 1000),
                "pageLoad": 30_000,
                "script": 10_000,
            },
        )
        return self

    def _wait_for_driver(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if self._call("GET", "/status").get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            assert self._driver is not None and self._driver.poll() is None, (
                "chromedriver exited"
            )
            assert time.monotonic() < deadline, "chromedriver did not start"
            time.sleep(0.05)

    def _call(self, method: str, path: str, body: object = None) -> dict[str, object]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (loopback http only)
            self._base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                value = json.load(error).get("value", {})
            raise WebDriverError(
                f"{value.get('error')}: {value.get('message')}"
            ) from None
        value = answer.get("value")
        return value if isinstance(value, dict) else {"value": value}

    def _command(
        self, method: str, path: str, body: object = None
    ) -> dict[str, object]:
        return self._call(method, f"/session/{self._session}{path}", body)

    def get(self, url: str) -> None:
        self._command("POST", "/url", {"url": url})

    @property
    def url(self) -> str:
        return str(self._command("GET", "/url")["value"])

    @property
    def title(self) -> str:
        return str(self._command("GET", "/title")["value"])

    def find(self, css: str) -> str:
        """The first element ``css`` selects (waiting for it up to the timeout)."""
        return str(
            self._command("POST", "/element", {"using": "css selector", "value": css})[
                _ELEMENT
            ]
        )

    def find_all(self, css: str) -> list[str]:
        found = self._command(
            "POST", "/elements", {"using": "css selector", "value": css}
        )
        items = found["value"]
        assert isinstance(items, list)
        return [str(item[_ELEMENT]) for item in items]

    def click(self, element: str) -> None:
        self._command("POST", f"/element/{element}/click", {})

    def type(self, element: str, text: str) -> None:
        self._command("POST", f"/element/{element}/clear", {})
        self._command("POST", f"/element/{element}/value", {"text": text})

    def text(self, element: str) -> str:
        return str(self._command("GET", f"/element/{element}/text")["value"])

    def wait_until(self, test: object, timeout: float | None = None) -> None:
        """Wait until ``test()`` is true (polling), or fail."""
        assert callable(test)
        deadline = time.monotonic() + (timeout or self.timeout)
        while not test():
            assert time.monotonic() < deadline, "the page did not change in time"
            time.sleep(0.05)

    def screenshot(self) -> bytes:
        """The visible page as PNG."""
        return base64.b64decode(str(self._command("GET", "/screenshot")["value"]))

    def close(self) -> None:
        if self._session:
            try:
                self._command("DELETE", "")
            except (OSError, WebDriverError):
                pass
            self._session = ""
        if self._driver is not None:
            self._driver.terminate()
            try:
                self._driver.wait(10)
            except subprocess.TimeoutExpired:
                self._driver.kill()
                self._driver.wait(10)
            self._driver = None
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
