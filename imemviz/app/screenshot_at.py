"""`imemviz --screenshot PNG RECORDING --at N`: the app as replay shows it after op N.

The replay controller loads the recording, seeks to the state after its first N - 1
ops, and steps op N exactly as the Replay pane's Step does: the engine applies it, the
map frames what it changed (`navigate.Navigator`, Follow changes) and the change marks
show it.  The marks are engineer A's layer: when the window has `marks` with a
`show_record(record)` method it is called with op N's `OpRecord` right before the grab,
so the marks are at full strength in the picture (`HOOK` below).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow


def _settled(window: MainWindow) -> bool:
    return window.wait_drawn()


def show_replay_at(
    app, window: MainWindow, recording: str, n: int, failures: list[str], timeout_s: float
) -> bool:
    """Drive the window to op `n` of `recording`; False when it did not settle in time."""
    from imemviz.app.main import wait_until

    replay = window.presenter.replay
    if not replay.load(recording):
        failures.append(window.message.text() or f"{recording}: cannot replay")
        return False

    def settle() -> bool:
        return wait_until(app, lambda: _settled(window) or bool(failures), timeout_s)

    if not settle():
        return False
    replay.seek(n - 1)
    if not settle():
        return False
    # Op N, as the Step button applies it: framed by Follow changes, marked by the marks.
    window.map.animator.duration_ms = 0  # the framing lands at once (no frame in between)
    replay.step()
    if not settle():
        return False
    HOOK(window)
    return settle()


def show_marks(window: MainWindow) -> None:
    """Engineer A's change marks, shown for op N (a no-op until the window has them)."""
    marks = getattr(window, "marks", None)
    record = getattr(window, "last_record", None)
    if marks is not None and record is not None and hasattr(marks, "show_record"):
        marks.show_record(record)


HOOK = show_marks
