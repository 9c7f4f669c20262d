#!/usr/bin/env bash
# System packages napari + PyQt6 need on Debian/Ubuntu (Qt >= 6.5 needs libxcb-cursor0), plus
# Xvfb for headless rendering, Chromium (headless) to test that the HTML reports render
# (tests/report/test_cohort_report.py) and, where the system Python lacks it, python3-venv.
# Idempotent and non-interactive: does nothing when everything is already installed. Runs as
# root, or through sudo otherwise. Other systems: install the equivalents by hand.
set -euo pipefail

PACKAGES=(
  xvfb xauth
  libxkbcommon0 libxkbcommon-x11-0
  libxcb1 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
  libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libxcb-xkb1
  libx11-xcb1 libxrender1 libxi6
  libgl1 libegl1 libglib2.0-0 libdbus-1-3 libfontconfig1 libfreetype6
  chromium
)
# scripts/venv.sh makes .venv with `python3 -m venv`, which needs ensurepip: Debian and
# Ubuntu ship it apart from their system Python, in python3-venv.
if [ -z "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ] && [ ! -x "$(dirname "$0")/../.venv/bin/python" ] \
    && ! python3 -m ensurepip --version >/dev/null 2>&1; then
  PACKAGES+=(python3-venv)
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_system_deps: no apt-get here; install Xvfb and Qt's xcb/GL libraries yourself:" >&2
  echo "  ${PACKAGES[*]}" >&2
  exit 1
fi

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install_system_deps: all ${#PACKAGES[@]} system packages already installed"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install_system_deps: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi

echo "install_system_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"
