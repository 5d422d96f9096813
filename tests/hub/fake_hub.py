"""A Hugging Face-style hub on loopback for the pull tests: the tree API with LFS sha256s,
the resolve path with Range requests, and switches for what can go wrong (a connection
dropped mid-file, a wrong sha256, a token required). It records every request."""
import hashlib
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class HubFile:
    data: bytes
    sha256: str = ""  # the hub's claim; default: the real one
    lfs: bool = True


@dataclass
class HubState:
    repos: dict = field(default_factory=dict)      # "owner/name" -> {path: HubFile}
    drop_after: dict = field(default_factory=dict)  # path -> bytes sent before the next GET is cut (once)
    ignore_range: bool = False                      # answer Range requests with the whole file (200)
    token: str = ""                                 # when set, requests without "Bearer token" get 401
    page_size: int = 0                              # >0: the tree comes in pages linked by Link: rel="next"
    requests: list = field(default_factory=list)    # (method, path, headers dict)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState = None  # set per server

    def log_message(self, *args):
        pass

    def send_json(self, status, obj, extra=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        st = self.state
        st.requests.append(("GET", self.path, dict(self.headers)))
        if st.token and self.headers.get("Authorization") != f"Bearer {st.token}":
            return self.send_json(401, {"error": "Invalid credentials"})
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/main\?recursive=true(?:&cursor=(\d+))?", self.path)
        if m:
            return self.tree(m.group(1), int(m.group(2) or 0))
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/main/(.+)", self.path)
        path = urllib.parse.unquote(m.group(2)) if m else None
        if m and m.group(1) in st.repos and path in st.repos[m.group(1)]:
            return self.file(path, st.repos[m.group(1)][path].data)
        self.send_json(404, {"error": "Repository not found"})

    def tree(self, repo, cursor):
        st = self.state
        if repo not in st.repos:
            return self.send_json(404, {"error": "Repository not found"})
        entries = []
        for path, f in sorted(st.repos[repo].items()):
            e = {"type": "file", "oid": hashlib.sha1(f.data).hexdigest(), "size": len(f.data), "path": path}
            if f.lfs:
                e["lfs"] = {"oid": f.sha256 or hashlib.sha256(f.data).hexdigest(), "size": len(f.data),
                            "pointerSize": 134}
            entries.append(e)
        extra = []
        if st.page_size:
            page = entries[cursor:cursor + st.page_size]
            if cursor + st.page_size < len(entries):
                host = self.headers["Host"]
                extra.append(("Link", f'<http://{host}/api/models/{repo}/tree/main?recursive=true'
                                      f'&cursor={cursor + st.page_size}>; rel="next"'))
            entries = page
        self.send_json(200, entries, extra)

    def file(self, path, data):
        st = self.state
        start = 0
        rng = self.headers.get("Range")
        if rng and not st.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = st.drop_after.pop(path, None)
        if cut is not None:
            # Promise the whole length, send part of it, then hang up.
            self.wfile.write(data[start:start + cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(data[start:])


class FakeHub:
    def __init__(self):
        self.state = HubState()
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def file_requests(self, path_tail):
        return [r for r in self.state.requests if "/resolve/main/" in r[1] and r[1].endswith(path_tail)]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
