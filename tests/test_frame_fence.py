"""frame_fence.FrameFence: the engine thread waits for the GUI's acknowledgement of a
version, never when no GUI arms the fence, and never past its limit."""

from __future__ import annotations

import threading

from imemviz.app.frame_fence import FrameFence


def test_an_unarmed_fence_never_waits() -> None:
    f = FrameFence()
    f.wait(5, limit=60.0)  # no GUI: would hang a minute if it waited
    assert f.waited_s == 0.0


def test_the_engine_goes_on_once_the_gui_acknowledged_its_version() -> None:
    f = FrameFence()
    f.armed = True
    f.ack(3)
    f.wait(3, limit=60.0)  # acknowledged already: returns at once
    f.wait(2, limit=60.0)  # an older version too
    done = threading.Event()

    def engine() -> None:
        f.wait(4, limit=60.0)
        done.set()

    t = threading.Thread(target=engine)
    t.start()
    f.ack(4)  # the GUI drew version 4
    t.join(60.0)
    assert done.is_set()


def test_a_gui_that_never_answers_costs_at_most_the_limit() -> None:
    f = FrameFence()
    f.armed = True
    f.wait(1, limit=0.001)  # returns after the limit, unacknowledged
    assert f.waited_s > 0.0


def test_after_a_wait_ran_out_the_rest_of_the_publish_does_not_wait() -> None:
    f = FrameFence()
    f.armed = True
    assert f.issue() == 1 and f.issue() == 2  # tokens: one per piece sent
    assert not f.wait(1, limit=0.001)  # the GUI did not answer in time
    assert f.hurried
    waits = f.waits
    assert f.wait(2, limit=60.0)  # would hang a minute: the publish goes on unpaced
    assert f.waits == waits
    f.hurried = False  # the next publish paces again
    f.ack(2)
    assert f.wait(2, limit=60.0)
