#!/usr/bin/env bash
# Build a standalone one-folder Linux bundle of imemviz with PyInstaller:
#   dist/imemviz/imemviz          the program (same command line as `imemviz`)
#   dist/imemviz/_internal/...    Python, Qt, numpy and imemviz's resources
# It installs imemviz (as a wheel would be) and PyInstaller into a build venv
# (build/bundle-venv, reused by later runs). Needs Python >= 3.11 and PyPI.
# Environment: IMEMVIZ_PYTHON (default python3), PYINSTALLER_VERSION,
# IMEMVIZ_BUNDLE_EXTRAS (default empty; "video" for export-video).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${IMEMVIZ_PYTHON:-python3}
venv=build/bundle-venv
pyinstaller_version=${PYINSTALLER_VERSION:-6.22.3}

say() { printf 'build-bundle: %s\n' "$*" >&2; }

if [[ ! -x $venv/bin/python ]]; then
    say "creating $venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
fi
say "installing imemviz and PyInstaller $pyinstaller_version into $venv"
# --force-reinstall of imemviz only: the bundle must hold this checkout's code.
# setuptools builds in build/lib and reuses what it finds there: start clean so
# a file deleted from the checkout cannot linger in the bundle.
rm -rf build/lib build/bdist.*
"$venv/bin/python" -m pip install -q "pyinstaller==$pyinstaller_version"
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps .
# IMEMVIZ_BUNDLE_EXTRAS=video adds the "video" extra (imageio-ffmpeg, with its
# ffmpeg) for `imemviz export-video`: 165 MB more, so not by default.
extras=${IMEMVIZ_BUNDLE_EXTRAS-}
export IMEMVIZ_BUNDLE_EXTRAS=$extras  # read by imemviz.spec
"$venv/bin/python" -m pip install -q ".${extras:+[$extras]}"

say "running PyInstaller"
rm -rf dist/imemviz
"$venv/bin/pyinstaller" --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/imemviz.spec

say "done: dist/imemviz/imemviz ($(du -sh dist/imemviz | cut -f1))"
