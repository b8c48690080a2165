"""Entry point of the PyInstaller bundle: the same `imemviz` command as the console script."""

import multiprocessing

from imemviz.cli import entry

if __name__ == "__main__":
    # The app imports traces in a spawned child process (io/trace/import_process.py):
    # in a frozen bundle, the child is this executable again and must run that, not the app.
    multiprocessing.freeze_support()
    entry()
