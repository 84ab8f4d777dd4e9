import socket
import time
import urllib.request

from playground.splash import Splash
from tests_helpers import free_port


def test_starting_page_answers_then_frees_the_port():
    port = free_port()
    splash = Splash("127.0.0.1", port)
    reply = urllib.request.urlopen(f"http://127.0.0.1:{port}/anything", timeout=5)
    assert b"Starting&hellip;" in reply.read() and reply.headers["X-Playground-Starting"] == "1"
    splash.close()
    with socket.socket() as s:  # the app can bind the port now
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_a_taken_port_is_left_alone():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        Splash("127.0.0.1", taken.getsockname()[1]).close()  # no error: the app will report the port


def test_the_starting_page_answers_until_gradio_starts_its_server(monkeypatch):
    """launch() spends seconds before it starts its server: the page keeps answering through them and
    closes just before Gradio's start_server binds the port, which is then free for it."""
    from gradio import http_server

    port = free_port()
    url = f"http://127.0.0.1:{port}/"

    def answers() -> bool:
        try:
            return b"Starting&hellip;" in urllib.request.urlopen(url, timeout=5).read()
        except OSError:
            return False

    seen_by_start_server = []

    def start_server(*args, **kwargs):  # stands in for Gradio's: what the port looks like when it runs
        seen_by_start_server.append(answers())
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        return "started"

    monkeypatch.setattr(http_server, "start_server", start_server)
    splash = Splash("127.0.0.1", port)
    splash.close_when_gradio_binds()
    assert answers()  # launch() is still preparing: the page answers
    assert http_server.start_server() == "started"
    assert seen_by_start_server == [False]  # closed before the server started
    assert http_server.start_server is start_server  # Gradio's own function is back for later calls


def test_a_browser_on_the_starting_page_reaches_the_app_across_a_closed_port():
    """Between the page closing and the app listening the port refuses connections (here 2 s, far
    longer than the real handover): the page keeps asking in the background and opens the app once it
    answers, instead of navigating into "connection refused" and staying there."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from playwright.sync_api import expect, sync_playwright

    from tests_helpers import CHROMIUM_FLAGS

    class App(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<p id='app'>the app</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    port = free_port()
    splash = Splash("127.0.0.1", port)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page()
        shown = []  # every page the tab showed: Chromium's error page is chrome-error://chromewebdata/
        page.on("framenavigated", lambda frame: shown.append(frame.url))
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.get_by_text("Starting")).to_be_visible()
        splash.close()
        time.sleep(2.0)  # the port refuses connections meanwhile
        app = ThreadingHTTPServer(("127.0.0.1", port), App)
        threading.Thread(target=app.serve_forever, daemon=True).start()
        try:
            expect(page.locator("#app")).to_have_text("the app", timeout=15_000)
            assert not [url for url in shown if url.startswith("chrome-error")], shown
        finally:
            app.shutdown()
            app.server_close()
            browser.close()
