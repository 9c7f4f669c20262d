#!/usr/bin/env bash
# Install napari-imilia and everything it needs on a fresh machine (idempotent): system
# libraries for Qt/Xvfb, then into the active virtual or conda environment, else into the
# repository's .venv (created on first use; see scripts/venv.sh): the CPU torch pin
# (requirements/ci.txt) unless the environment already holds a CUDA torch, and the package
# with its test extras. Activate that environment afterwards to use `imilia` and `napari`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_system_deps.sh
source scripts/venv.sh

pip_install=("$IMILIA_PYTHON" -m pip install --quiet --disable-pip-version-check)
if "$IMILIA_PYTHON" -c 'import sys, torch; sys.exit(not torch.version.cuda)' 2>/dev/null; then
  # a GPU user's own CUDA torch (installed first, as the README says): keep it
  echo "install: keeping torch $("$IMILIA_PYTHON" -c 'import torch; print(torch.__version__)')"
  grep -v '^torch==' requirements/ci.txt >"${TMPDIR:-/tmp}/imilia-ci-no-torch.txt"
  "${pip_install[@]}" -r "${TMPDIR:-/tmp}/imilia-ci-no-torch.txt"
else
  "${pip_install[@]}" -r requirements/ci.txt
fi
"${pip_install[@]}" -e ".[test]"
