"""What both pages share: a FastAPI app with the page, thumbnails by key, and a server on 127.0.0.1.

    app = page_app("review", Thumbnails(keys))      # GET / (the page, its JS and CSS inlined), GET /thumb?key=...
    run(app, port=0)                                # port 0: a free one, printed; blocks until Ctrl-C

Thumbnails are served only for the keys the page was given (a path outside them is 404, whatever it names), at
most `Thumbnails.side` pixels on their long side, encoded once and kept (LRU) so that paging back is free.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
import webbrowser
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import uvicorn  # here, not where the server starts: a missing uvicorn is said before any work (cli/review.py)
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

THUMB_SIDE = 320  # px, the long side: a grid cell is ~200 CSS px, x1.5 for high-density screens
CACHE_BYTES = 64 * 2**20  # ~20 KB per JPEG thumbnail: ~3,000 of them


def name_of(key: str) -> str:
    """What a page shows for an image: a path key's file name; an array key as it is."""
    return os.path.basename(key) if os.sep in key else key


def _load_file(key: str):
    from ..data.images import open_rgb

    return open_rgb(key, short_side=None)


class Thumbnails:
    """JPEG thumbnails of a fixed set of images. `load`: key -> PIL image (default: the key is a file's path; give
    an ImageSet's `load` for array keys)."""

    def __init__(self, keys: Sequence[str], load: Callable | None = None, side: int = THUMB_SIDE):
        self.keys = set(keys)
        self.load = load or _load_file
        self.side = side
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes:
        if key not in self.keys:  # only the page's own images: no path from a request reaches the disk
            raise KeyError(key)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        img = self.load(key)
        img.thumbnail((self.side, self.side))
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG", quality=85)
        data = buf.getvalue()
        with self._lock:
            self._cache[key] = data
            self._bytes += len(data)
            while self._bytes > CACHE_BYTES and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._bytes -= len(old)
        return data


def page_html(name: str) -> str:
    """static/<name>.html with static/pages.css, static/common.js and static/<name>.js inlined: one response, no
    other request. common.js comes first, in the same <script>: it holds the helpers both pages use ($, el, say,
    api) and the "use strict" that then covers the page's script too."""
    static = resources.files(__package__) / "static"
    html = (static / f"{name}.html").read_text(encoding="utf-8")
    css = (static / "pages.css").read_text(encoding="utf-8")
    js = "\n".join((static / f).read_text(encoding="utf-8") for f in ("common.js", f"{name}.js"))
    return html.replace("/*PAGES_CSS*/", css).replace("//PAGE_JS", js)


def page_app(name: str, thumbs: Thumbnails, title: str) -> FastAPI:
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    html = page_html(name)

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/thumb")
    def thumb(key: str) -> Response:
        try:
            data = thumbs.get(key)
        except KeyError:
            raise HTTPException(404, "No such image on this page.") from None
        except Exception as e:  # an image deleted or damaged since the review: the page shows a placeholder
            raise HTTPException(410, f"The image cannot be read now: {type(e).__name__}: {e}") from e
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    return app


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket; port 0 asks the system for a free one (the page's URL then names it). A port in use or
    a wrong host: ConfigError (serve/listen.py)."""
    from ..serve.listen import listen

    return listen(host, port)


@dataclass
class Running:
    """A server started on a thread (tests, notebooks): `url`, and `stop()`."""

    server: object
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _server(app: FastAPI):
    # lifespan off: the pages have no startup or shutdown work, and uvicorn would log Ctrl-C as a lifespan error
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5))


def start(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Running:
    """Serve on a background thread; returns once the server answers."""
    sock = bind(host, port)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    return Running(server, thread, f"http://{host}:{sock.getsockname()[1]}")


def run(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 0,
    open_browser: bool = False,
    what: str = "page",
    sock: socket.socket | None = None,
) -> None:
    """Serve until Ctrl-C (or SIGTERM); prints the URL first. A stop asked for is a normal exit (status 0).
    sock: a socket `bind` gave before the page's work began (the commands bind first, so that a port in use fails
    before minutes of embedding, with nothing written); None: host and port are bound here."""
    import signal
    import sys

    sock = bind(host, port) if sock is None else sock
    url = f"http://{host}:{sock.getsockname()[1]}/"
    print(f"The {what} is at {url} (Ctrl-C stops it; every answer is already saved).", flush=True)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, (url,)).start()
    # uvicorn finishes the requests in flight, then re-raises the signal to the handler it found
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _server(app).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    print("Stopped.", flush=True)
