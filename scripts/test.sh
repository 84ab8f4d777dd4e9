#!/usr/bin/env bash
# Installs everything the test suite needs (Python packages, Debian's Chromium, npm for the book's
# GPT-2 files) and runs it.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/test_data.py -x`, one test alone
# (`bash scripts/test.sh tests/test_browser.py::test_prompt_styles_switch`) or the quick ones (`-m "not slow"`).
# Every run ends with its 15 slowest tests; a test that hangs fails by name after pytest.ini's timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=""
command -v chromium >/dev/null 2>&1 || missing="chromium"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -r requirements-test.txt
python3 -m pytest -q "$@"
