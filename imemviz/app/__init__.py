"""The desktop app: the only package that imports Qt (PySide6, pyqtgraph).

`main.run_app` starts it; `worker.Engine` runs the engine on its own thread;
`window.MainWindow` holds the panes (`panes/`), the action registry
(`actions.py`) and the dialogs.
"""
