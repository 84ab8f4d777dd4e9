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
