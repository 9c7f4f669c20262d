#!/usr/bin/env bash
# The README's main command: install, then run the whole IMILIA pipeline on the generated
# sample slide with the bundled demo model, writing everything into ./imilia_demo and opening
# napari when a display exists (a screenshot of the view otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec imilia demo --out imilia_demo "$@"
