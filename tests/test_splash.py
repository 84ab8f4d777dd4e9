import socket
import urllib.request

from playground.splash import Splash
from tests_helpers import free_port


def test_starting_page_answers_then_frees_the_port():
    port = free_port()
    splash = Splash("127.0.0.1", port)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/anything", timeout=5).read()
    assert b"Starting&hellip;" in body and b'http-equiv="refresh"' in body
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
