#!/usr/bin/env bash
# Build the wheel from a clean copy of the source, install it into a fresh venv
# and check that the installed copy works on its own:
#   - every file of resources/ (icons, scenes, ...) is in the wheel as
#     imemviz/_resources/...;
#   - `imemviz --version`, `imemviz run` on a shipped scene (a {"scene": ...}
#     header), `imemviz check` of its state, `imemviz --screenshot` offscreen.
# Run by .ci/run (about 15 s with a warm pip cache). Everything happens in a
# temp folder that is removed at the end; the checkout is left untouched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
python=${IMEMVIZ_PYTHON:-python3}

say() { printf 'check-wheel: %s\n' "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
# pip on some machines is noisy about missing local mirrors: keep only real news.
pipq() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A copy without build/, dist/ and venvs: setuptools reuses build/lib, whose
# stale files would otherwise end up in the wheel.
mkdir "$work/src"
tar -C "$root" --exclude=./.venv --exclude=./build --exclude=./dist --exclude=./.git \
    --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$work/src" -xf -

"$python" -m venv "$work/venv"
py=$work/venv/bin/python
pipq "$py" -m pip wheel -q --no-deps "$work/src" -w "$work/wheel"
wheel=$(echo "$work"/wheel/imemviz-*.whl)
[[ -f $wheel ]] || fail "no wheel built"
say "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"

# Every resource file is in the wheel, at imemviz/_resources/<same path>.
"$py" - "$wheel" "$root/resources" <<'PY'
import pathlib, sys, zipfile
wheel, res = sys.argv[1], pathlib.Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
want = {
    "imemviz/_resources/" + p.relative_to(res).as_posix()
    for p in res.rglob("*")
    if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
}
missing = sorted(want - names)
if missing:
    sys.exit("check-wheel: FAIL: not in the wheel: " + ", ".join(missing))
print(f"check-wheel: all {len(want)} resource files are in the wheel", file=sys.stderr)
PY

pipq "$py" -m pip install -q "$wheel"
app=$work/venv/bin/imemviz
# Run outside the checkout, so nothing can be found there by accident, with the
# app's settings and log in the temp folder.
cd "$work"
export IMEMVIZ_CONFIG_DIR=$work/config IMEMVIZ_LOG_DIR=$work/log

version=$("$app" --version)
want_version=$("$py" -c 'import imemviz; print(imemviz.__version__)')
[[ $version == "imemviz $want_version" ]] || fail "--version printed '$version'"
"$py" -c 'import imemviz.resources as r, sys; p = r.resources_dir(); sys.exit(not (p and "site-packages" in str(p)))' ||
    fail "the installed copy does not find its resources in site-packages"

printf '%s\n' '{"format": "imemviz-recording", "version": 1, "start": {"scene": "default"}}' \
    '{"op": "stats"}' >scene.jsonl
"$app" run scene.jsonl --results-out results.jsonl --state-out state.json.zst
grep -q '"ok":true' results.jsonl || fail "imemviz run: no successful result line"
"$app" check state.json.zst >/dev/null || fail "imemviz check of the scene's state failed"

QT_QPA_PLATFORM=offscreen "$app" --screenshot shot.png
[[ -s shot.png ]] || fail "--screenshot wrote no PNG"
[[ $(head -c 8 shot.png | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "shot.png is not a PNG"
say "ok: $version; run, check and --screenshot ($(stat -c %s shot.png) bytes) from the installed wheel"
