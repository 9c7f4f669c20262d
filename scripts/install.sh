#!/usr/bin/env bash
# Install napari-imilia and everything it needs on a fresh machine (idempotent):
# system libraries for Qt/Xvfb, the CPU torch pin, and the package with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_system_deps.sh
python3 -m pip install --quiet --disable-pip-version-check -r requirements/ci.txt
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
