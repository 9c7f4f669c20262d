# Sourced by scripts/install.sh, test.sh and demo.sh (not run on its own): choose the Python
# environment napari-imilia is installed into and sets IMILIA_PYTHON to its interpreter.
#
# - A virtual environment or conda environment is active ($VIRTUAL_ENV, $CONDA_PREFIX): that
#   one (GPU users: activate the environment holding your CUDA torch, then run the script).
# - None is active: .venv in the repository, created on first use, reused after. The system
#   Python itself is never installed into (Debian 12 / Ubuntu 24.04 refuse: PEP 668), and two
#   checkouts on one machine keep their own `imilia`.
# Its bin/ goes first on PATH, so `imilia` and `napari` are this environment's.

imilia_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ -n "${VIRTUAL_ENV:-}" ]; then
  imilia_env="$VIRTUAL_ENV"
  imilia_env_kind="the active virtual environment"
elif [ -n "${CONDA_PREFIX:-}" ]; then
  imilia_env="$CONDA_PREFIX"
  imilia_env_kind="the active conda environment"
else
  imilia_env="$imilia_repo/.venv"
  imilia_env_kind="the repository's .venv"
  if [ ! -x "$imilia_env/bin/python" ]; then
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "napari-imilia needs Python >= 3.11; python3 is $(python3 --version 2>&1)" >&2
      exit 1
    fi
    echo "creating $imilia_env (a virtual environment for this checkout)"
    if ! python3 -m venv "$imilia_env"; then
      echo "could not create $imilia_env: install python3-venv (Debian/Ubuntu:" \
        "apt-get install python3-venv), or activate an environment and run again" >&2
      exit 1
    fi
  fi
fi

IMILIA_PYTHON="$imilia_env/bin/python"
if ! "$IMILIA_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  if [ "$imilia_env" = "$imilia_repo/.venv" ]; then
    remedy="remove $imilia_env and run again"
  else
    remedy="activate an environment with Python >= 3.11 (or deactivate this one)"
  fi
  echo "$IMILIA_PYTHON ($imilia_env_kind) is missing or older than Python 3.11; $remedy" >&2
  exit 1
fi
export PATH="$imilia_env/bin:$PATH"
echo "using $imilia_env_kind: $imilia_env"
