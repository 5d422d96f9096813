"""Starts real `tandem serve` processes on loopback (a free port each), waits for /health,
and always stops them. The binary comes from TANDEM_BIN, the small real model from
TANDEM_TEST_MODEL; the qwen35moe fixture is in the repository."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: str, *args: str, env: dict | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"tandem-serve-{self.port}.log"
        self.log = open(self.log_path, "w")
        cmd = [os.environ["TANDEM_BIN"], "serve", "-m", model, "--port", str(self.port), "-t", "2", *args]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tandem serve exited with {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("tandem serve did not become healthy in 120 s")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def real_model_path() -> str:
    path = os.environ.get("TANDEM_TEST_MODEL", "")
    if not path or not Path(path).exists():
        if os.environ.get("TANDEM_REQUIRE_SHARED") == "1":
            pytest.fail("real test model missing (TANDEM_TEST_MODEL)")
        pytest.skip("SKIPPED LOUDLY: real test model not found; run tools/fetch_model.sh")
    return path


def shared_template(name: str) -> str:
    """A chat template from ../shared/data/templates (skips loudly when the folder is absent)."""
    shared = os.environ.get("TANDEM_SHARED", str(ROOT.parent / "shared"))
    path = os.path.join(shared, "data", "templates", name)
    if not os.path.exists(path):
        if os.environ.get("TANDEM_REQUIRE_SHARED") == "1":
            pytest.fail("shared templates missing (TANDEM_SHARED)")
        pytest.skip("SKIPPED LOUDLY: shared templates not found; set TANDEM_SHARED")
    return path


@pytest.fixture(scope="module")
def server():
    s = Server(real_model_path(), "-np", "4", "-c", "8192", "--alias", "coder")
    yield s
    assert s.stop() == 0, "SIGTERM must end the server with exit code 0"


@pytest.fixture(scope="module")
def hybrid_server():
    # No speculation: the plain answers the speculating servers are compared with (the file
    # has an MTP block, which --spec auto would run).
    s = Server(str(ROOT / "tests/fixtures/qwen35moe/model-q8_0.gguf"), "-np", "1", "-c", "2048", "--spec", "none")
    yield s
    assert s.stop() == 0
