"""``imemviz export-video RECORDING OUT [--fps N] [--size WxH]``: a recording as a video.

The recording is replayed in the app itself (a main window drawn offscreen,
its own engine thread, the replay controller stepping the ops) and every
frame is a grab of the window, so the video shows exactly what a presenter
sees, caption overlay included.  Each position of the timeline gets a fixed
number of frames (`Timeline.frame_counts`: the ``t`` stamps, or 0.5 s per op
and 2.5 s per caption, at `fps`), so the frame count is known from the file.

Frames are encoded by the ffmpeg that ships inside the ``imageio-ffmpeg``
wheel (no system ffmpeg needed): H.264 for ``.mp4``, VP9 for ``.webm``, a
palette-optimised GIF for ``.gif``.  The output is written to a temporary
file next to OUT and renamed when complete: unusable input (exit 2) or an
error never leaves a half-written OUT.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from imemviz.io.atomic import AtomicFile
from imemviz.io.replay import Timeline
from imemviz.io.script import ScriptError

FORMATS = (".mp4", ".webm", ".gif")
DEFAULT_FPS = 10
DEFAULT_SIZE = (1280, 800)
MIN_SIZE = (64, 64)
MAX_SIZE = (3840, 2160)
WAIT_S = 60.0
# Panes that say nothing in a replay (nothing is selected): their room goes to the others.
HIDDEN_PANES = ("inspector",)

Progress = Callable[[int, int], bool | None]
"""progress(frames written, total frames); returning False cancels the export."""


class ExportError(Exception):
    """The export cannot run; the message is one line (exit 2 on the command line)."""


class ExportCancelled(Exception):
    """The progress callback asked to stop."""


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x800"`` -> (1280, 800); raises ExportError on anything else."""
    parts = text.lower().split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise ExportError(f"--size: expected WIDTHxHEIGHT like 1280x800, got {text!r}") from None
    if not (MIN_SIZE[0] <= w <= MAX_SIZE[0] and MIN_SIZE[1] <= h <= MAX_SIZE[1]):
        raise ExportError(
            f"--size: {w}x{h} is outside {MIN_SIZE[0]}x{MIN_SIZE[1]}..{MAX_SIZE[0]}x{MAX_SIZE[1]}"
        )
    if w % 2 or h % 2:
        # H.264/VP9 in yuv420p need even sizes; keep every format alike.
        raise ExportError(f"--size: width and height must be even, got {w}x{h}")
    return w, h


def _encoder(out: str, tmp: str, size: tuple[int, int], fps: float):
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ExportError(
            "video export needs the imageio-ffmpeg package: pip install 'imemviz[video]'"
        ) from None
    ext = os.path.splitext(out)[1].lower()
    kw: dict[str, Any] = {"fps": fps, "macro_block_size": 1, "ffmpeg_log_level": "error"}
    if ext == ".mp4":
        # Sharp text needs a low CRF; veryfast keeps the export quick on small machines.
        kw |= {
            "codec": "libx264",
            "quality": None,
            "output_params": ["-preset", "veryfast", "-crf", "20", "-movflags", "+faststart"],
        }
    elif ext == ".webm":
        kw |= {
            "codec": "libvpx-vp9",
            "quality": None,
            "output_params": ["-b:v", "0", "-crf", "32", "-deadline", "realtime", "-cpu-used", "8"],
        }
    else:
        # One palette for the whole clip (the app's palette is small), no dithering:
        # flat areas stay flat, so the GIF stays small and the text crisp.
        kw |= {
            "codec": "gif",
            "quality": None,
            "pix_fmt_out": "pal8",
            "output_params": [
                "-vf",
                "split[a][b];[a]palettegen=max_colors=128:stats_mode=full[p];"
                "[b][p]paletteuse=dither=none",
                "-f",
                "gif",
            ],
        }
    if ext in (".mp4", ".webm"):
        kw["output_params"] += ["-f", "mp4" if ext == ".mp4" else "webm"]
    gen = imageio_ffmpeg.write_frames(tmp, size, **kw)
    gen.send(None)
    return gen


def _frame(window, size: tuple[int, int]) -> bytes:
    """The window as tightly packed RGB bytes of exactly `size`."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage

    img = window.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    if (img.width(), img.height()) != size:
        img = img.scaled(
            size[0],
            size[1],
            Qt.AspectRatioMode.IgnoreAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    raw = bytes(img.constBits())
    if bpl == w * 3:
        return raw[: w * h * 3]
    return b"".join(raw[y * bpl : y * bpl + w * 3] for y in range(h))


def _wait(app, window, timeout_s: float = WAIT_S) -> None:
    from imemviz.app.main import wait_until

    if not wait_until(app, window.wait_drawn, timeout_s):
        raise ExportError("the app did not finish drawing in time")


def export_video(
    recording: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = DEFAULT_SIZE,
    progress: Progress | None = None,
) -> int:
    """Replay `recording` offscreen and encode it to `out`; returns the frames written.

    Raises ScriptError (unusable recording), ExportError (bad options, no
    encoder) or ExportCancelled; OUT is only created when everything worked.
    """
    out = os.fspath(out)
    ext = os.path.splitext(out)[1].lower()
    if ext not in FORMATS:
        raise ExportError(f"{out}: unknown video format (use {', '.join(FORMATS)})")
    if not fps > 0 or fps > 120:
        raise ExportError(f"--fps: expected 1..120, got {fps:g}")
    tl = Timeline.load(recording)
    tl.start_vm()  # an unusable start (unknown scene, bad state) fails before any window
    counts = tl.frame_counts(fps)
    total = sum(counts)

    from PySide6.QtCore import QSettings, Qt

    from imemviz.app.main import _app
    from imemviz.app.window import MainWindow
    from imemviz.app.worker import Engine

    try:
        # The one atomic writer: the encoder writes target.tmp (the name keeps OUT's
        # extension), commit puts it at OUT; an output naming the recording is refused.
        target = AtomicFile(out, inputs=(recording,))
    except OSError as e:
        raise ExportError(str(e)) from None
    tmp = target.tmp
    try:
        app = _app(sys.argv[:1])
        tmpdir = tempfile.TemporaryDirectory(prefix="imemviz-export-")
        settings = QSettings(os.path.join(tmpdir.name, "imemviz.ini"), QSettings.Format.IniFormat)
        engine = Engine()
        engine.start()
        window = MainWindow(engine, settings)
        window.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
    except BaseException:
        target.discard()
        raise
    gen = None
    written = 0
    try:
        # The smallest size the window allows; frames are scaled to `size` exactly.
        hint = window.minimumSizeHint()
        window.resize(max(size[0], hint.width()), max(size[1], hint.height()))
        window.show()
        for name in HIDDEN_PANES:
            dock = window.docks.get(name)
            if dock is not None:
                dock.hide()
        present = getattr(window, "presenter", None)
        if present is None:
            raise ExportError("this build of the app has no replay")
        ctl = present.replay
        if not ctl.load(tl):
            raise ExportError(f"{recording}: cannot replay")
        from imemviz.app.main import wait_until

        # The recording is read and applied on the engine thread: its timeline first.
        if not wait_until(app, lambda: ctl.active and window.wait_drawn(), WAIT_S):
            raise ExportError(f"{recording}: the replay did not load in time")
        gen = _encoder(out, tmp, size, fps)
        pending = 0  # ops whose positions get no frame: applied together with the next one
        for k, n in enumerate(counts):
            if k > 0:
                pending += 1
            if n == 0 and k < len(counts) - 1:
                continue
            ctl.advance(pending)
            pending = 0
            _wait(app, window)
            frame = _frame(window, size)
            for _ in range(n):
                gen.send(frame)
                written += 1
            if progress is not None and progress(written, total) is False:
                raise ExportCancelled()
        gen.close()
        gen = None
        target.commit()
        return written
    finally:
        if gen is not None:
            with contextlib.suppress(Exception):
                gen.close()
        target.discard()
        window.close()
        engine.stop()
        window.deleteLater()
        tmpdir.cleanup()


# ------------------------------------------------------------------ command line
def main_export(argv: Sequence[str]) -> int:
    """``imemviz export-video``: 0 done, 2 unusable input (one line on stderr), 1 failure."""
    from imemviz.cli import UsageError, _Parser  # one-line argparse errors, as every command

    parser = _Parser(
        prog="imemviz export-video",
        description="Replay a recording in the app offscreen and encode it as a video "
        "(.mp4, .webm or .gif by OUT's extension).",
    )
    parser.add_argument("recording", help="a recording or script (.jsonl)")
    parser.add_argument("out", help="the video to write: .mp4, .webm or .gif")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS, help="frames per second (10)")
    parser.add_argument("--size", default="x".join(map(str, DEFAULT_SIZE)), help="WxH (1280x800)")
    try:
        ns = parser.parse_args(list(argv))
        size = parse_size(ns.size)
        if not os.path.isfile(ns.recording):
            raise ExportError(f"{ns.recording}: no such file")
        if not os.path.isdir(os.path.dirname(os.path.abspath(ns.out))):
            raise ExportError(f"{ns.out}: the folder does not exist")
        if not os.environ.get("QT_QPA_PLATFORM"):
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        n = export_video(ns.recording, ns.out, fps=ns.fps, size=size)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except (ScriptError, ExportError) as e:
        print(f"imemviz export-video: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"imemviz export-video: {ns.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"{ns.out}: {n} frames, {size[0]}x{size[1]} at {ns.fps:g} fps")
    return 0
