#!/usr/bin/env bash
# The README's main command: install (into the active environment, else the repository's
# .venv), then run the whole IMILIA pipeline on the generated sample slide with the bundled
# demo model, writing everything into ./imilia_demo and opening napari when a display exists
# (a screenshot of the view otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/venv.sh >/dev/null
exec imilia demo --out imilia_demo "$@"
