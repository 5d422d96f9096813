"""Shared by the server benchmarks (load.py, multiturn.py): loopback-only URLs and waiting
for a server to finish loading."""
import time

import httpx


def require_loopback(url: str, script: str) -> None:
    if not url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        raise SystemExit(f"{script} sends traffic to loopback only")


def wait_healthy(url: str, seconds: float = 600) -> None:
    """Both servers answer /health with 503 while loading, 200 when ready."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not become healthy in {seconds:.0f} s")
