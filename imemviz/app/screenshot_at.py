"""`imemviz --screenshot PNG RECORDING --at N`: the app as replay shows it after op N.

The replay controller loads the recording, seeks to the state after its first N - 1
ops, and steps op N exactly as the Timeline pane's Step does: the engine applies it and
publishes its `ActionRecord`, whose changes (`imemviz.model.changes`) the change marks
outline and the map frames (`navigate.Navigator`, Follow changes).  Right before the
grab the marks' fade is held, so op N's marks are at full strength in the picture.
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
    hold_marks(window)
    return settle()


def hold_marks(window: MainWindow) -> None:
    """Op N's change marks at full strength for the grab (they would fade in 2.5 s)."""
    marks = getattr(window, "marks", None)
    if marks is not None:
        marks.hold(True)
