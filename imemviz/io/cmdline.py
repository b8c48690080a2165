"""What `imemviz check` and `imemviz diff` share: argument parsing by the CLI's rules
(errors are one line on stderr and exit 2) and loading a state file for a command."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from imemviz.model.vm import VM


class CommandExit(Exception):
    """End the command with `status` (the message, if any, is already printed)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit 2, and never calls sys.exit."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise CommandExit(2)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise CommandExit(status)

    def parse(self, argv: Sequence[str]) -> argparse.Namespace:
        # Options may come before or after file names (contract 3.4).
        return self.parse_intermixed_args(list(argv))


def load(path: str) -> VM:
    """The VM of a state file, or CommandExit(2) after one line on stderr naming the file."""
    from imemviz.io.state import StateError, load_state

    try:
        return load_state(path)
    except StateError as e:
        text = str(e)
        print(text if text.startswith(path) else f"{path}: {text}", file=sys.stderr)
    except IsADirectoryError:
        print(f"{path}: is a folder, not a state file", file=sys.stderr)
    except OSError as e:
        print(f"{path}: cannot read: {e.strerror or e}", file=sys.stderr)
    raise CommandExit(2)


def output(text: str) -> bool:
    """Print `text` on stdout; False when the reader went away (`| head`), quietly."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):  # no error at exit either
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return False
    return True
