"""Entry point of the PyInstaller bundle: the same `imemviz` command as the console script."""

from imemviz.cli import entry

if __name__ == "__main__":
    entry()
