"""TensorBoard as a user sees it: a server on a free loopback port for a log directory, asked
over HTTP what it serves (``tests/e2e`` check the HParams columns, the run names and the tag
groups through it; ``docs/screenshots.py`` photographs its pages with headless Chromium)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = ["serve_tensorboard", "tensorboard_json"]


def tensorboard_json(url: str, route: str, request: dict | None = None) -> dict:
    """GET ``route`` of a TensorBoard server, or POST ``request`` to it as JSON (with the headers
    TensorBoard's own web page sends)."""
    data = None if request is None else json.dumps(request).encode()
    headers = {"Content-Type": "application/json", "X-XSRF-Protected": "1"}
    with urllib.request.urlopen(urllib.request.Request(url + route, data, headers), timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def serve_tensorboard(logdir: Path, timeout: float = 60) -> Iterator[str]:
    """Start ``tensorboard --logdir logdir`` (this Python's) on a free loopback port; yield its URL
    once it serves the runs' HParams (it reads event files in the background); stop it after."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).parent / "tensorboard"), "--logdir", str(logdir), "--host", "127.0.0.1",
               "--port", str(port), "--reload_interval", "1"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            with contextlib.suppress(OSError):
                if tensorboard_json(url, "/data/plugin/hparams/experiment", {"experimentName": ""}).get("hparamInfos"):
                    break
            if time.time() > deadline or server.poll() is not None:
                raise TimeoutError(f"TensorBoard on {url} did not serve the hparams of {logdir}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
