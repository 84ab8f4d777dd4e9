"""`python app.py` answers on its port from the splash page to the app with no gap: a browser opened
at once never sees "connection refused"."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from playground import store
from tests_helpers import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_port_answers_from_the_starting_page_until_the_app_is_up(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / store.DEFAULT_NAME).symlink_to(store.ensure_default_tokenizer(), target_is_directory=True)
    port = free_port()
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--models-dir", str(models)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    seen, refused_after_splash = [], 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                seen.append("splash" if b"Starting&hellip;" in body else "app")
                if seen[-1] == "app":
                    break
            except OSError:
                refused_after_splash += bool(seen)  # before the splash is up, the process is still starting
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert seen and seen[0] == "splash" and seen[-1] == "app", seen[-3:]
    assert refused_after_splash == 0
