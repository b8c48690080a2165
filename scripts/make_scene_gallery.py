#!/usr/bin/env python3
"""Screenshots of every shipped scene at its key op, for docs/app.md's scene gallery.

    .venv/bin/python scripts/make_scene_gallery.py [OUTDIR] [--size WxH ...]

The key op of a scene (KEY_OPS, chosen by reading its captions) is the op the
scene exists to show.  Each scene is rendered as
`imemviz --screenshot OUT --size WxH --at N SCENE` renders it: the replay view
right after that op, framed on what it changed, with its change marks.
Default sizes 1280x720 (a projector: NAME.png) and 1920x1080 (NAME-1920x1080.png);
OUTDIR defaults to docs/screenshots/scenes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from imemviz import resources

# The key op of each shipped scene (0-based op index: the view right after it) and what
# the picture shows; docs/app.md's scene gallery says the same.  tests/test_scenes.py
# checks that every scene but the default one is listed and its op exists.
KEY_OPS: dict[str, tuple[int, str]] = {
    "accept-2m-huge-series": (8, "the second 2M accept: one AUG of a 2M leaf each"),
    "accept-4k-fallback": (520, "a 2M accept on a 4K-only KVM: a 4K page AUGed, the accept fails"),
    "design-2022-mainline": (78, "the punch: mainline zaps the leaf before the folio is freed"),
    "design-2022-upm-v8": (80, "the same punch in v8: the folio freed, the leaf left mapped"),
    "fault-race": (9, "the held fault sees the sequence moved and retries"),
    "gmem-close": (278, "closing the guest_memfd: private leaves zapped, folios freed"),
    "gmem-mmap-in-place": (23, "converted in place: the private fault maps the same pfn"),
    "gmem-order-0": (518, "512 4K leaves for a 2 MiB buffer"),
    "gmem-order-9": (518, "one 2M leaf for the same buffer"),
    "memory-failure": (21, "memory_failure on a guest_memfd page: hwpoison, leaf zapped"),
    "memslot-delete": (16, "deleting a memslot zaps its leaves while a fault is held"),
    "mixed-2m": (7, "a 4K conversion inside a 2M mapping"),
    "qemu-conversion": (527, "converted without discard: the private folio kept"),
    "qemu-ovmf-pflash": (11, "a write to READONLY flash: KVM_EXIT_MMIO, memory unchanged"),
    "snp-launch": (13, "SNP_LAUNCH_FINISH: the launch pages become Guest-Valid"),
    "snp-psmash": (11, "a 4K discard PSMASHes a 2M RMP entry into 512 4K entries"),
    "snp-unvalidated": (9, "a touch of a page never validated: the guest terminates"),
    "td-boot": (145, "the booted TD: 368 private 4K leaves, the rest unbacked"),
    "td-pre-fault": (9, "KVM_PRE_FAULT_MEMORY: 64 PENDING leaves before the guest runs"),
    "touch-before-accept": (9, "a write to a page never accepted: the TD is dead"),
    "virtio-gpu-blob-6.12": (14, "6.12 refuses the blob's non-refcounted pages"),
    "virtio-gpu-blob-6.16": (14, "6.16 maps the same blob"),
}
SKIP = {"default"}  # the launch screenshot shows it
# The sizes made by default and the suffix of their file names.
SIZES = {"1280x720": "", "1920x1080": "-1920x1080"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=os.path.join("docs", "screenshots", "scenes"))
    ap.add_argument("--size", action="append", help="WxH (repeatable)")
    ns = ap.parse_args()
    os.makedirs(ns.out, exist_ok=True)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    failed = 0
    for name in resources.scene_names():
        if name in SKIP:
            continue
        if name not in KEY_OPS:
            print(f"{name}: no key op in KEY_OPS", file=sys.stderr)
            failed += 1
            continue
        k = KEY_OPS[name][0]
        for size in ns.size or list(SIZES):
            png = os.path.join(ns.out, f"{name}{SIZES.get(size, '-' + size)}.png")
            cmd = [sys.executable, "-m", "imemviz", "--screenshot", png, "--size", size]
            cmd += ["--at", str(k + 1), str(resources.scene_path(name))]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
            status = "ok" if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.strip()}"
            failed += r.returncode != 0
            print(f"{name}: op #{k} -> {png} ({status})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
