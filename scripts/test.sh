#!/usr/bin/env bash
# The README's test command: install napari-imilia with the CPU pins and test extras (into
# the active environment, else the repository's .venv: scripts/install.sh), then run the
# whole test suite under a virtual display (so the `gui` tests run) and ruff.
# Exits non-zero if anything fails, including when pytest collects no tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
source scripts/venv.sh >/dev/null

# PyQt6 for qtpy (napari) and pytest-qt alike, even where PyQt5 is also installed.
export QT_API=pyqt6 PYTEST_QT_API=pyqt6
status=0
xvfb-run -a -s "-screen 0 1280x1024x24" "$IMILIA_PYTHON" -m pytest -q tests || status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests" >&2
fi
"$IMILIA_PYTHON" -m ruff check src tests || status=$((status == 0 ? 1 : status))
exit "$status"
