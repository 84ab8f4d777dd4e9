"""A "starting…" page served on the app's port while the app itself imports and builds.

Importing Gradio and PyTorch takes several seconds on a small machine; this page (standard library
only, so it is up in a fraction of a second) answers meanwhile and asks for itself again in the
background, so a browser opened at once lands on the app as soon as it is up, instead of on
"connection refused" (also in the instant between this page closing and the app listening).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARK = "X-Playground-Starting"  # a header only this page sends: the app's own pages lack it
PAGE = b"""<!doctype html><html><head><meta charset="utf-8">
<noscript><meta http-equiv="refresh" content="1"></noscript>
<title>Instruction-tuning playground</title></head>
<body style="font-family: system-ui, sans-serif; color: #374151; margin: 4em auto; max-width: 36em">
<h2>Instruction-tuning playground</h2><p>Starting&hellip; this page opens the app by itself in a moment.</p>
<script>
// Ask in the background until the app answers instead of this page, then open it. A refused
// connection (the moment between this page closing and the app listening) is asked again, never
// navigated into: the browser would show its error page.
(function ask() {
  fetch(location.href, {cache: "no-store"}).then(function (reply) {
    if (reply.headers.get("X-Playground-Starting")) { setTimeout(ask, 500); } else { location.reload(); }
  }, function () { setTimeout(ask, 200); });
})();
</script>
</body></html>"""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.send_header("Cache-Control", "no-store")
        self.send_header(MARK, "1")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:  # quiet
        pass


class Splash:
    """Serve the page until `close()`; does nothing if the port is already taken."""

    def __init__(self, host: str, port: int):
        try:
            self._server: ThreadingHTTPServer | None = ThreadingHTTPServer((host, port), _Handler)
        except OSError:
            self._server = None
            return
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="splash", daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close_when_gradio_binds(self) -> None:
        """Keep answering through Gradio's `launch()`, which spends seconds (config, routes) before it
        binds the port, and close just before that bind, so a browser never meets a closed port."""
        from gradio import http_server

        start_server = http_server.start_server

        def close_then_start(*args: object, **kwargs: object) -> object:
            http_server.start_server = start_server
            self.close()
            return start_server(*args, **kwargs)

        http_server.start_server = close_then_start
