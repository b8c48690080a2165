#!/usr/bin/env bash
# Build the PyInstaller bundle (packaging/build-bundle.sh) and check that the
# bundled program works on its own: --version, a headless run of a shipped
# scene, and an offscreen --screenshot whose PNG must exist and be non-empty.
# Prints the bundle's size and the build time. Not run by CI (too slow for
# every run); CI checks the installed wheel instead (.ci/run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'test-bundle: %s\n' "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

start=$(date +%s)
packaging/build-bundle.sh
build_s=$(($(date +%s) - start))

app=$PWD/dist/imemviz/imemviz
[[ -x $app ]] || fail "$app missing"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The bundle must not lean on this checkout: run it from elsewhere, with its
# settings and log in the temp folder.
cd "$work"
export IMEMVIZ_CONFIG_DIR=$work/config IMEMVIZ_LOG_DIR=$work/log

version=$("$app" --version)
[[ $version == "imemviz "* ]] || fail "--version printed: $version"
say "$version"

printf '%s\n' '{"format": "imemviz-recording", "version": 1, "start": {"scene": "default"}}' \
    '{"op": "stats"}' >scene.jsonl
"$app" run scene.jsonl --results-out results.jsonl --state-out state.json.zst
grep -q '"ok":true' results.jsonl || fail "run: no result line"
"$app" check state.json.zst >/dev/null || fail "check of the scene's state failed"
say "run and check of the default scene: ok"

t0=$(date +%s)
QT_QPA_PLATFORM=offscreen "$app" --screenshot shot.png
[[ -s shot.png ]] || fail "--screenshot wrote no PNG"
[[ $(head -c 8 shot.png | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "shot.png is not a PNG"
say "screenshot: $(stat -c %s shot.png) bytes in $(($(date +%s) - t0)) s"

if [[ ${IMEMVIZ_BUNDLE_EXTRAS-} == *video* ]]; then
    QT_QPA_PLATFORM=offscreen "$app" export-video "$OLDPWD/resources/scenes/default.jsonl" scene.gif
    [[ -s scene.gif && $(head -c 3 scene.gif) == GIF ]] || fail "export-video wrote no GIF"
    say "export-video: $(stat -c %s scene.gif) bytes of GIF"
else
    # Without the extra the command says what is missing, in one line.
    if QT_QPA_PLATFORM=offscreen "$app" export-video "$OLDPWD/resources/scenes/default.jsonl" x.gif 2>err.txt; then
        fail "export-video worked without imageio-ffmpeg?"
    fi
    grep -q "imageio-ffmpeg" err.txt || fail "export-video: $(cat err.txt)"
    say "export-video: not in this bundle (IMEMVIZ_BUNDLE_EXTRAS=video adds it)"
fi

say "bundle: $(du -sh "$OLDPWD/dist/imemviz" | cut -f1) in $(find "$OLDPWD/dist/imemviz" -type f | wc -l) files; build took ${build_s} s"
say "ok"
