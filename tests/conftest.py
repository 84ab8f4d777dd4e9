import json
from pathlib import Path

import pytest

from playground import store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def default_tokenizer():
    """The embedded default model's tokenizer (converted once into models/, then cached)."""
    return store.load_tokenizer(store.DEFAULT)


@pytest.fixture
def write(tmp_path):
    """write(name, content) -> path; content is bytes, str, or a JSON-able object."""
    def _write(name, content):
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_text(json.dumps(content), encoding="utf-8")
        return path
    return _write
