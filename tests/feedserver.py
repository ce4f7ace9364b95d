"""A real HTTP server on 127.0.0.1 for the tests: serves feeds we build, records requests.

Routes are set while it runs, so a test can change a feed mid-run, make it fail, or
make it slow. Every request's path and headers are recorded.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Entry:
    title: str
    text: str
    link: str
    published: datetime | None = None
    guid: str | None = None


def rss(title: str, entries: list[Entry]) -> bytes:
    """An RSS 2.0 document with the given entries, HTML bodies escaped as feeds carry them."""
    items = []
    for entry in entries:
        parts = [
            f"<title>{escape(entry.title)}</title>",
            f"<link>{escape(entry.link)}</link>",
            f"<description>{escape(entry.text)}</description>",
        ]
        if entry.guid or entry.link:
            parts.append(f"<guid>{escape(entry.guid or entry.link)}</guid>")
        if entry.published:
            parts.append(f"<pubDate>{format_datetime(entry.published.astimezone(UTC), usegmt=True)}</pubDate>")
        items.append("<item>" + "".join(parts) + "</item>")
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{escape(title)}</title>'
        f"<link>http://127.0.0.1/</link><description>test feed</description>{''.join(items)}</channel></rss>"
    ).encode()


class FeedServer:
    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str], float]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, dict(self.headers), time.time()))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.delay_s:
                    time.sleep(route.delay_s)
                etag = route.headers.get("ETag")
                if etag and self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, body: bytes, status: int = 200, **headers: str) -> None:
        self.routes[path] = Route(body=body, status=status, headers={"Content-Type": "application/rss+xml", **headers})

    def requests_for(self, path: str) -> list[tuple[str, dict[str, str], float]]:
        return [r for r in self.requests if r[0] == path]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()
