"""The one-line eliding label: painted text fits its width, `text()` and the tooltip keep it all."""

from __future__ import annotations

from imemviz.app.elided_label import ElidedLabel
from imemviz.app.panes.entries import EntriesPane

NOTE = "at op #16 (attribute conversion), step 4 of 10: TDH.MEM.RANGE.BLOCK ×4"


def test_a_narrow_label_shows_one_line_that_fits_and_keeps_the_whole_text(qtbot) -> None:
    label = ElidedLabel(NOTE)
    qtbot.addWidget(label)
    label.resize(160, 20)
    label.show()
    shown = label.shown_text()
    assert shown != NOTE and shown.endswith("…") and NOTE.startswith(shown[:-1])
    assert label.fontMetrics().horizontalAdvance(shown) <= label.contentsRect().width()
    assert label.text() == NOTE and label.toolTip() == NOTE


def test_a_wide_label_shows_everything_without_a_tooltip(qtbot) -> None:
    label = ElidedLabel(NOTE)
    qtbot.addWidget(label)
    label.resize(label.sizeHint().width() + 10, 20)
    label.show()
    assert label.shown_text() == NOTE and label.toolTip() == ""


def test_bold_text_is_elided_again(qtbot) -> None:
    label = ElidedLabel()
    qtbot.addWidget(label)
    label.resize(200, 20)
    label.show()
    label.setText(NOTE)
    label.setStyleSheet("font-weight: bold")
    assert label.fontMetrics().horizontalAdvance(label.shown_text()) <= label.contentsRect().width()


def test_the_entries_pane_note_stays_one_line_at_1280x720(make_window, qtbot) -> None:
    w = make_window(size=(1280, 720))
    entries = w.findChild(EntriesPane)
    entries.count.setText(NOTE)
    entries.count.setStyleSheet("color: #4a148c; font-weight: bold")  # a step's look
    qtbot.wait(20)
    count = entries.count
    assert count.text() == NOTE
    assert count.fontMetrics().horizontalAdvance(count.shown_text()) <= count.contentsRect().width()
    assert count.height() < 2 * count.fontMetrics().height()  # one line, not a column of words
