"""`tandem pull`, `list`, `rm` and `-hf` against a hub served by the test on loopback
(fake_hub.py), with the repository's tiny real GGUF fixtures as the models."""
import hashlib
import json
import os
import subprocess
from pathlib import Path

import gguf
import pytest

from fake_hub import FakeHub, HubFile

ROOT = Path(__file__).resolve().parents[2]
Q4 = (ROOT / "tests/fixtures/qwen2/model-q4_0.gguf").read_bytes()
Q8 = (ROOT / "tests/fixtures/qwen2/model-q8_0.gguf").read_bytes()
REPO = "test/Tiny-GGUF"


@pytest.fixture
def hub():
    h = FakeHub()
    h.state.repos[REPO] = {
        "README.md": HubFile(b"# tiny\n", lfs=False),
        "Tiny-Q4_K_M.gguf": HubFile(Q4),
        "Tiny-Q8_0.gguf": HubFile(Q8),
    }
    yield h
    h.stop()


def tandem(hub, cache, *args, token=None, check=False):
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub.url, TANDEM_CACHE=str(cache))
    if token:
        env["HF_TOKEN"] = token
    # errors="replace": a random-weight fixture model may print bytes that are not UTF-8.
    p = subprocess.run([os.environ["TANDEM_BIN"], *args], env=env, capture_output=True, text=True, errors="replace",
                       timeout=120)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def cache_files(cache):
    return sorted(str(p.relative_to(cache)) for p in Path(cache).rglob("*") if p.is_file())


def test_pull_default_quant_checks_sha256_and_lists(hub, tmp_path):
    p = tandem(hub, tmp_path, "pull", REPO, check=True)
    path = Path(p.stdout.strip())
    assert path == tmp_path / "hub" / REPO / "Tiny-Q4_K_M.gguf"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(Q4).hexdigest()
    assert "sha256 matches" in p.stderr
    assert not list(tmp_path.rglob("*.part"))
    # The pulled file is a model tandem opens.
    info = subprocess.run([os.environ["TANDEM_BIN"], "inspect", str(path)], capture_output=True, text=True)
    assert info.returncode == 0 and "tandem-fixture-qwen2" in info.stdout
    # A second pull asks the hub's list again but downloads nothing.
    before = len(hub.file_requests("Tiny-Q4_K_M.gguf"))
    p2 = tandem(hub, tmp_path, "pull", f"{REPO}:q4_k_m", check=True)
    assert "up to date" in p2.stderr and len(hub.file_requests("Tiny-Q4_K_M.gguf")) == before
    tandem(hub, tmp_path, "pull", f"{REPO}:Q8_0", check=True)
    listing = tandem(hub, tmp_path, "list", check=True).stdout
    assert f"{REPO}:Q4_K_M" in listing and f"{REPO}:Q8_0" in listing
    # rm one quant, then the rest.
    assert "Tiny-Q8_0.gguf" in tandem(hub, tmp_path, "rm", f"{REPO}:Q8_0", check=True).stdout
    listing = tandem(hub, tmp_path, "list", check=True).stdout
    assert f"{REPO}:Q4_K_M" in listing and "Q8_0" not in listing
    tandem(hub, tmp_path, "rm", REPO, check=True)
    assert cache_files(tmp_path) == []
    bad = tandem(hub, tmp_path, "rm", REPO)
    assert bad.returncode != 0 and "not in the cache" in bad.stderr


def test_dropped_connection_is_resumed_with_a_range_request(hub, tmp_path):
    hub.state.drop_after["Tiny-Q8_0.gguf"] = len(Q8) // 3
    p = tandem(hub, tmp_path, "pull", f"{REPO}:Q8_0", check=True)
    assert Path(p.stdout.strip()).read_bytes() == Q8
    gets = hub.file_requests("Tiny-Q8_0.gguf")
    assert len(gets) == 2, gets
    assert "Range" not in gets[0][2]
    assert gets[1][2]["Range"] == f"bytes={len(Q8) // 3}-"


def test_part_file_left_by_an_interrupted_pull_is_resumed(hub, tmp_path):
    part = tmp_path / "hub" / REPO / "Tiny-Q8_0.gguf.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(Q8[:5000])
    p = tandem(hub, tmp_path, "pull", f"{REPO}:Q8_0", check=True)
    assert "resuming" in p.stderr
    assert Path(p.stdout.strip()).read_bytes() == Q8 and not part.exists()
    assert [r[2].get("Range") for r in hub.file_requests("Tiny-Q8_0.gguf")] == ["bytes=5000-"]


def test_a_file_being_downloaded_is_not_downloaded_twice(hub, tmp_path):
    import fcntl
    part = tmp_path / "hub" / REPO / "Tiny-Q8_0.gguf.part"
    part.parent.mkdir(parents=True)
    with open(part, "wb") as held:  # another pull holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        p = tandem(hub, tmp_path, "pull", f"{REPO}:Q8_0")
    assert p.returncode != 0 and "another tandem pull is downloading it now" in p.stderr
    assert hub.file_requests("Tiny-Q8_0.gguf") == []
    tandem(hub, tmp_path, "pull", f"{REPO}:Q8_0", check=True)  # released: it goes through


def test_server_ignoring_range_restarts_the_file(hub, tmp_path):
    hub.state.ignore_range = True
    part = tmp_path / "hub" / REPO / "Tiny-Q8_0.gguf.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(Q8[:5000])
    p = tandem(hub, tmp_path, "pull", f"{REPO}:Q8_0", check=True)
    assert Path(p.stdout.strip()).read_bytes() == Q8


def test_wrong_sha256_is_an_error_and_leaves_nothing(hub, tmp_path):
    hub.state.repos[REPO]["Tiny-Q8_0.gguf"].sha256 = "0" * 64
    p = tandem(hub, tmp_path, "pull", f"{REPO}:Q8_0")
    assert p.returncode != 0
    assert "sha256 mismatch for Tiny-Q8_0.gguf" in p.stderr and "0" * 64 in p.stderr
    assert hashlib.sha256(Q8).hexdigest() in p.stderr
    assert [f for f in cache_files(tmp_path) if not f.endswith("manifest.json")] == []
    assert "Q8_0" not in tandem(hub, tmp_path, "list").stdout


def test_missing_quant_lists_the_quants_there_are(hub, tmp_path):
    p = tandem(hub, tmp_path, "pull", f"{REPO}:IQ2_XXS")
    assert p.returncode != 0
    assert "no IQ2_XXS file; the repository has: Q4_K_M, Q8_0" in p.stderr
    p = tandem(hub, tmp_path, "pull", "test/nothing-here")
    assert p.returncode != 0 and "no such repository" in p.stderr


def write_split(src: bytes, tmp_path: Path) -> list[bytes]:
    """The fixture as gguf-split writes it: two parts, metadata in the first, split.* keys in both."""
    src_path = tmp_path / "src.gguf"
    src_path.write_bytes(src)
    reader = gguf.GGUFReader(src_path)
    tensors = list(reader.tensors)
    halves = [tensors[: len(tensors) // 2], tensors[len(tensors) // 2:]]
    parts = []
    for i, half in enumerate(halves):
        out = tmp_path / f"part{i}.gguf"
        w = gguf.GGUFWriter(out, arch="qwen2")
        if i == 0:
            for f in reader.fields.values():
                if f.name.startswith("GGUF.") or f.name == "general.architecture":
                    continue
                sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
                w.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
        w.add_uint16("split.no", i)
        w.add_uint16("split.count", 2)
        w.add_int32("split.tensors.count", len(tensors))
        for t in half:
            w.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for t in half:
            w.write_tensor_data(t.data)
        w.close()
        parts.append(out.read_bytes())
    return parts


def test_split_model_parts_are_fetched_together(hub, tmp_path):
    (tmp_path / "src").mkdir()
    p1, p2 = write_split(Q8, tmp_path / "src")
    hub.state.repos["test/Split-GGUF"] = {  # in a folder whose name needs escaping in a URL
        "Q8_0 (split)/Tiny-Q8_0-00001-of-00002.gguf": HubFile(p1),
        "Q8_0 (split)/Tiny-Q8_0-00002-of-00002.gguf": HubFile(p2),
        "Tiny-Q4_K_M.gguf": HubFile(Q4),
    }
    hub.state.page_size = 2  # and the file list arrives in pages
    cache = tmp_path / "cache"
    p = tandem(hub, cache, "pull", "test/Split-GGUF:Q8_0", check=True)
    first = Path(p.stdout.strip())
    assert first.name == "Tiny-Q8_0-00001-of-00002.gguf"
    assert first.read_bytes() == p1 and (first.parent / "Tiny-Q8_0-00002-of-00002.gguf").read_bytes() == p2
    info = subprocess.run([os.environ["TANDEM_BIN"], "inspect", str(first)], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert "26 holding" in info.stdout  # every tensor of both parts
    assert "test/Split-GGUF:Q8_0" in tandem(hub, cache, "list", check=True).stdout


def test_hf_token_is_sent_and_its_absence_explained(hub, tmp_path):
    hub.state.token = "hf_secret"
    p = tandem(hub, tmp_path, "pull", REPO)
    assert p.returncode != 0 and "HF_TOKEN" in p.stderr
    hub.state.requests.clear()
    tandem(hub, tmp_path, "pull", REPO, token="hf_secret", check=True)
    assert hub.state.requests and all(r[2].get("Authorization") == "Bearer hf_secret" for r in hub.state.requests)


def test_hf_flag_runs_a_model_by_name(hub, tmp_path):
    p = tandem(hub, tmp_path, "run", "-hf", f"{REPO}:Q8_0", "-p", "hello", "-n", "4", "--temp", "0", "-t", "1",
               check=True)
    assert "generation: " in p.stderr
    assert (tmp_path / "hub" / REPO / "Tiny-Q8_0.gguf").read_bytes() == Q8
    # chat (one message through the template) and bench take it the same way.
    p = tandem(hub, tmp_path, "chat", "-hf", f"{REPO}:Q8_0", "-p", "hello", "-n", "4", "--temp", "0", "-t", "1",
               check=True)
    assert "[prompt " in p.stderr and " | reply " in p.stderr, p.stderr
    p = tandem(hub, tmp_path, "bench", "-hf", f"{REPO}:Q4_K_M", "-p", "8", "-n", "0", "-r", "1", "-t", "1", "-o", "json",
               check=True)
    assert json.loads(p.stdout)[0]["model_filename"].endswith("Tiny-Q4_K_M.gguf")
    # The hub gone: the cached copy still runs.
    hub.stop()
    p = tandem(hub, tmp_path, "run", "-hf", f"{REPO}:Q8_0", "-p", "hello", "-n", "2", "--temp", "0", "-t", "1", check=True)
    assert "using the cached copy" in p.stderr
    both = tandem(hub, tmp_path, "run", "-hf", REPO, "-m", "x.gguf", "-p", "hi")
    assert both.returncode != 0
