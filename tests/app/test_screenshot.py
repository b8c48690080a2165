"""`imemviz --screenshot PNG [FILE]`: a PNG of the whole window, exit 0, no window shown."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PySide6.QtGui import QImage

from imemviz import resources

from .conftest import td_session

pytestmark = pytest.mark.qt


def _run(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )
    return subprocess.run(
        [sys.executable, "-m", "imemviz", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _check_png(path) -> QImage:
    img = QImage(str(path))
    assert not img.isNull()
    assert (img.width(), img.height()) == (1600, 1000)
    colours = {img.pixel(x, y) for x in range(0, 1600, 37) for y in range(0, 1000, 23)}
    assert len(colours) > 10  # a drawn window, not a blank
    return img


def test_screenshot_of_a_recording(tmp_path) -> None:
    s = td_session()
    from imemviz.io import plans

    s.apply_group(plans.accept_and_touch(s.vm, 0x10).ops)
    rec = tmp_path / "r.jsonl"
    s.save_recording(rec)
    out = tmp_path / "shot.png"
    proc = _run("--screenshot", str(out), str(rec), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _check_png(out)
    assert not (tmp_path / "config" / "imemviz").exists()  # the user's layout is untouched


def test_screenshot_of_the_default_scene(tmp_path) -> None:
    if resources.scene_path("default") is None:
        pytest.skip("the default scene is not installed")
    out = tmp_path / "default.png"
    proc = _run("--screenshot", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _check_png(out)


def test_screenshot_of_a_broken_file_exits_2(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "imemviz-recording", "version": 1, "start": {"vm": {}}}\n')
    out = tmp_path / "x.png"
    proc = _run("--screenshot", str(out), str(bad), tmp_path=tmp_path)
    assert proc.returncode == 2
    assert "bad.jsonl:1" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


# ------------------------------------------------------------------ --size and --at


def test_screenshot_size(tmp_path) -> None:
    out = tmp_path / "small.png"
    proc = _run("--screenshot", str(out), "--size", "1280x720", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    img = QImage(str(out))
    assert (img.width(), img.height()) == (1280, 720)


def test_screenshot_at_an_op_of_a_recording(tmp_path) -> None:
    path = resources.scene_path("mixed-2m")
    if path is None:
        pytest.skip("the scenes are not installed")
    out = tmp_path / "at.png"
    proc = _run(
        "--screenshot", str(out), str(path), "--at", "8", "--size", "1920x1080", tmp_path=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    img = QImage(str(out))
    assert (img.width(), img.height()) == (1920, 1080)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--size", "12x"], "--size '12x': expected WxH"),
        (["--size", "100x100"], "--size 100x100: from 640x400"),
        (["--at", "0"], "--at 0: N counts ops applied, from 1"),
        (["--at", "99"], "has 22 ops (N from 1 to 22)"),
        (["--at", "two"], "--at 'two': expected an op count"),
    ],
)
def test_bad_size_or_at_exits_2_with_one_line(tmp_path, args, says) -> None:
    path = resources.scene_path("mixed-2m")
    if path is None:
        pytest.skip("the scenes are not installed")
    out = tmp_path / "x.png"
    proc = _run("--screenshot", str(out), str(path), *args, tmp_path=tmp_path)
    assert proc.returncode == 2
    assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()


def test_at_needs_a_recording_and_a_screenshot(tmp_path) -> None:
    state = os.path.join(os.path.dirname(__file__), "..", "data", "state-v1-sw.json.gz")
    proc = _run("--screenshot", str(tmp_path / "x.png"), state, "--at", "1", tmp_path=tmp_path)
    assert proc.returncode == 2 and "is a state file" in proc.stderr
    proc = _run("--at", "1", tmp_path=tmp_path)
    assert proc.returncode == 2 and "go with --screenshot" in proc.stderr


def test_at_shows_the_state_after_op_n_framed_and_marked(make_window, qtbot, qapp) -> None:
    """In-process, what `--at N` does: the state after op N, op N's changes
    (model/changes.py, the marks' source) framed and marked at full strength."""
    from imemviz.app.panes.map_frame import needs_frame, on_screen
    from imemviz.app.screenshot_at import show_replay_at
    from imemviz.io.diff import diff_vms
    from imemviz.io.replay import Timeline

    path = resources.scene_path("mixed-2m")
    if path is None:
        pytest.skip("the scenes are not installed")
    w = make_window(size=(1280, 720), fold=True)
    failures: list[str] = []
    assert show_replay_at(qapp, w, str(path), 8, failures, 60.0)
    assert not failures
    tl = Timeline.load(path)
    want = tl.start_vm()
    for op in tl.ops[:8]:
        want.apply(op)
    session = w.engine.worker.session
    assert diff_vms(want, session.vm)["equal"]
    rec = w.last_record
    assert rec.op == tl.ops[7]
    # The marks are op N's changes (session op #7), held at full strength for the grab.
    op_changes = session.info[7].changes
    latest = w.marks.latest
    assert latest is not None and latest.ops == (7,)
    assert latest.gfns == op_changes.gfns and latest.gfns
    assert w.marks.step(w.marks.clock() + 60.0) == 1.0  # held: no fade
    assert w.map_marks.ink.isVisible() and w.map_marks.ink.opacity() == 1.0
    # Framed on the same ranges: on screen and legible.
    lay = w.map.layout_
    assert on_screen(lay, latest.gfns) and not needs_frame(lay, latest.gfns)
    assert w.presenter.overlay.isVisible()  # the caption as replay shows it
    # Pixels: the marks' outline is drawn around the change (without it the picture
    # differs exactly there).
    view = w.map.view
    with_marks = view.grab().toImage()
    for it in (w.map_marks.ink, w.map_marks.halo):
        it.hide()
    without = view.grab().toImage()
    a, b = latest.gfns[0]
    p0, p1 = w.map.gfn_pos(a), w.map.gfn_pos(b - 1)  # cell centres, in view pixels
    cw, ch = lay.cell_px()
    x0, x1 = min(p0.x(), p1.x()) - cw - 12, max(p0.x(), p1.x()) + cw + 12
    if p0.y() != p1.y():  # a range over several rows: whole rows
        x0, x1 = 0, view.width()
    y0, y1 = min(p0.y(), p1.y()) - ch - 12, max(p0.y(), p1.y()) + ch + 12
    near = far = 0
    for y in range(0, with_marks.height(), 2):
        for x in range(0, with_marks.width(), 2):
            if with_marks.pixel(x, y) != without.pixel(x, y):
                if x0 <= x <= x1 and y0 <= y <= y1:
                    near += 1
                else:
                    far += 1
    assert near > 20 and far < near // 4, (near, far)


def test_screenshot_of_an_observed_timeline_at_an_event(tmp_path) -> None:
    """An observed timeline (imemviz import) takes --size and --at N: the window of that
    size scrubbed to just after its first N events; N past its end exits 2, one line."""
    from imemviz.io.trace.importer import import_traces
    from imemviz.io.trace.kernel_export import export_recording

    trace = tmp_path / "t.trace"
    trace.write_text("\n".join(export_recording(str(resources.scene_path("td-boot")))) + "\n")
    out = tmp_path / "o.jsonl"
    import_traces([str(trace)], str(out))
    png = tmp_path / "o.png"
    r = _run(
        "--screenshot", str(png), str(out), "--size", "1280x720", "--at", "5", tmp_path=tmp_path
    )
    assert r.returncode == 0, r.stderr
    img = QImage(str(png))
    assert (img.width(), img.height()) == (1280, 720)
    r = _run("--screenshot", str(png), str(out), "--at", "999999", tmp_path=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--at 999999" in lines[0] and "events" in lines[0]
