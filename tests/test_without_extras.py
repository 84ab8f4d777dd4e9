"""The app without its compiled extra (llama.cpp's Python package), and the files it writes: readable
by the user as any file they write (mode from the umask), never mkstemp's private 0600."""

import os
import stat
import sys
from pathlib import Path

import pytest

from playground import file_writes, runs
from playground.export import ExportRequest, export_run, parity
from playground.manager import ModelManager


def test_a_gguf_export_without_llama_cpp_writes_the_file_and_says_how_to_check_it(tiny_run, tiny_model_dir,
                                                                                   tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if llama-cpp-python were not installed
    manager = ModelManager(tiny_run, tokenizer_spec=str(tiny_model_dir), dtype="float32")
    result = export_run(manager, ExportRequest(run_id="tiny-run", format="gguf", quant="f16",
                                               out=tmp_path / "gguf", parity_count=2, max_new_tokens=4))
    assert (result.folder / "model.gguf").stat().st_size > 0
    assert result.parity is None
    note = next(line for line in result.lines() if line.startswith("No parity check"))
    assert "python -m pip install -r requirements-llama.txt" in note


def test_loading_a_gguf_in_llama_cpp_without_the_package_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(Exception, match=r"python -m pip install -r requirements-llama\.txt"):
        parity.load_llama(tmp_path / "model.gguf", 128)


def test_the_app_requirements_need_no_compiler():
    root = Path(__file__).resolve().parent.parent
    names = [line.split("==")[0].lower() for line in (root / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert "llama-cpp-python" not in names
    extra = (root / "requirements-llama.txt").read_text()
    assert "llama-cpp-python[server]==" in extra


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_written_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        mode = file_writes._file_mode()
    finally:
        os.umask(old)
    assert mode == 0o666 & ~umask


def test_a_grading_file_is_readable_like_any_file_the_user_writes(tmp_path):
    runs.write_json(tmp_path / "grading.json", {"score": 1})
    (tmp_path / "plain.txt").write_text("x")
    assert stat.S_IMODE((tmp_path / "grading.json").stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
