"""The offline demo corpus served on loopback: one HTTP server per site, each on its own port.

``seeds/demo/sites/<site>/`` is a site's web root. Inside feeds and pages, ``{{BASE}}`` stands for the
site's own base URL and ``{{BASE:<site>}}`` for another site's, so the static files work on whatever
ports are free. Query strings are ignored when mapping a path to a file (tracking parameters reach
the same page, as on the real web). Feeds and pages carry an ETag and Last-Modified and honour
conditional requests, like a well-behaved news site.

The same server is the tests' loopback site (``tests/conftest.py``).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

from sitrep.settings import PROJECT_ROOT

__all__ = ["DEMO_ROOT", "DemoSite", "serve_corpus"]

DEMO_ROOT = PROJECT_ROOT / "seeds" / "demo"
_FEED_NAMES = ("rss.xml", "atom.xml", "feed.xml", "index.xml")
_TEXT_TYPES = {".html", ".htm", ".xml", ".rss", ".atom", ".txt", ".json"}
_STARTED = formatdate(usegmt=True)


@dataclass
class DemoSite:
    name: str
    root: Path
    feed_path: str
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's: bytes only for AF_UNIX
        return f"http://{host}:{port}"

    @property
    def feed_url(self) -> str:
        return f"{self.base_url}/{self.feed_path}"


def _load_sites(root: Path) -> list[DemoSite]:
    manifest = root / "MANIFEST.yaml"
    titles: dict[str, str] = {}
    feeds: dict[str, str] = {}
    if manifest.exists():
        data = yaml.safe_load(manifest.read_text(encoding="utf-8")) or {}
        for item in data.get("sites", []) if isinstance(data, dict) else []:
            name = str(item.get("folder") or item.get("site") or item.get("id") or "").split("/")[-1]
            if name:
                titles[name] = str(item.get("name") or name)
                if item.get("feed"):
                    feeds[name] = str(item["feed"]).split("/")[-1]
    sites = []
    for folder in sorted(p for p in (root / "sites").iterdir() if p.is_dir()):
        feed = feeds.get(folder.name) or next((n for n in _FEED_NAMES if (folder / n).exists()), "")
        sites.append(DemoSite(name=titles.get(folder.name, folder.name), root=folder, feed_path=feed))
    return sites


def _handler(site: DemoSite, bases: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    own = bases[site.root.name].encode()
    root = site.root.resolve()  # once: resolving walks every folder of the path, a syscall each
    others = [(f"{{{{BASE:{name}}}}}".encode(), base.encode()) for name, base in bases.items()]

    class Handler(BaseHTTPRequestHandler):
        server_version = "sitrep-demo/1"
        protocol_version = "HTTP/1.1"  # keep-alive, as real sites: a connection per page costs both sides

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
            return

        def do_GET(self) -> None:  # noqa: N802 - stdlib's name
            path = unquote(urlsplit(self.path).path).lstrip("/") or "index.html"
            file = (root / path).resolve()
            if root not in file.parents or not file.is_file():
                self.send_error(404)
                return
            body = file.read_bytes()
            if file.suffix in _TEXT_TYPES:  # UTF-8 files: the placeholders are ASCII, replaced as bytes
                if b"{{BASE:" in body:
                    for placeholder, base in others:
                        body = body.replace(placeholder, base)
                body = body.replace(b"{{BASE}}", own)
            etag = f'"{hashlib.sha256(body).hexdigest()[:20]}"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            if file.suffix == ".xml":
                ctype = "application/xml"
            self.send_response(200)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8" if file.suffix in _TEXT_TYPES else ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", _STARTED)
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def serve_corpus(root: Path = DEMO_ROOT, ports: dict[str, int] | None = None) -> Iterator[list[DemoSite]]:
    """Serve every site of the corpus on 127.0.0.1 (preferred ports when free) until the block ends."""
    sites = _load_sites(root)
    ports = ports or {}
    for site in sites:
        try:
            site.server = ThreadingHTTPServer(("127.0.0.1", ports.get(site.root.name, 0)), BaseHTTPRequestHandler)
        except OSError:
            site.server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        site.server.daemon_threads = True
    bases = {site.root.name: site.base_url for site in sites}
    threads = []
    for site in sites:
        assert site.server is not None
        site.server.RequestHandlerClass = _handler(site, bases)
        thread = threading.Thread(target=site.server.serve_forever, name=f"demo-{site.root.name}", daemon=True)
        thread.start()
        threads.append(thread)
    try:
        yield sites
    finally:
        for site in sites:
            assert site.server is not None
            site.server.shutdown()
            site.server.server_close()


def remembered_ports(path: Path) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def remember_ports(path: Path, sites: list[DemoSite]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ports = {s.root.name: int(s.server.server_address[1]) for s in sites if s.server is not None}
    path.write_text(json.dumps(ports, indent=2))
