"""The menu bar's menus, typed: the modules that add actions to "&File", "&View"...

PySide6 declares `QAction.menu()` as returning a QObject (it is a template in
C++), so every caller had to trust that it is a QMenu. These helpers check it
once and hand back `QMenu | None`.
"""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QMenuBar


def menu_of(action: QAction) -> QMenu | None:
    """The menu `action` opens (a menu-bar entry), or None for a plain action."""
    menu = action.menu()
    return menu if isinstance(menu, QMenu) else None


def bar_menus(bar: QMenuBar) -> dict[str, QMenu]:
    """The menu bar's menus by their text, mnemonic included ("&File")."""
    menus: dict[str, QMenu] = {}
    for action in bar.actions():
        menu = menu_of(action)
        if menu is not None:
            menus[action.text()] = menu
    return menus
