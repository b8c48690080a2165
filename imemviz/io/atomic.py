"""The one writer of every file imemviz writes: outputs never destroy anything.

State files, `run` results, recordings, bug-report zips, videos and the app's
settings all go through `AtomicFile`:

- **A regular file, or a new name**: the data goes to a temp file in the
  target's own folder, which is fsynced, given the mode of the file it
  replaces (a new file: 0666 & ~umask; as root, the owner too), renamed over
  the target, and the folder fsynced.  A crash leaves the old file or the new
  one, never a mix.
- **A symlink** is followed: the file it points to is replaced, the link stays.
- **Not a regular file** (a device such as /dev/null, a FIFO, /dev/stdout or
  any /proc/self/fd link, or a symlink to one): written in place, never
  replaced.  The data is staged in a temp file and copied at commit, so a
  command that fails writes nothing there.
- **An output that names an input** of the command is refused before any work.
- **A write error** (disk full, I/O error) removes the temp file and raises
  `OutputError`, one line naming the file.
- **Temp files** are named ``.imemviz-tmp.BOOT.PID.START.RANDOM.NAME``: the
  boot, the process id and its start time (from /proc).  Whoever next writes
  into the same folder removes the ones whose process is gone (an earlier
  boot, or no process with that pid and start time), so a run killed with
  SIGKILL leaves nothing behind for long.  Nothing else is ever removed.

Never imports Qt.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterable
from typing import IO, Any

TMP_PREFIX = ".imemviz-tmp."
_TMP_RE = re.compile(r"^\.imemviz-tmp\.([0-9a-f]{8})\.(\d+)\.(\d+)\.([0-9a-f]{8})\.")
_NAME_MAX = 255
_COPY_CHUNK = 1 << 20
# Links that name a descriptor of this process: writing "to" them is writing to that fd.
_FD_LINK = re.compile(r"^/(?:proc/(?:self|thread-self|\d+)/fd|dev/fd)/(\d+)$")


class OutputError(OSError):
    """An output cannot be written; ``str()`` is one line: ``PATH: cannot write: REASON``.

    `strerror` is the bare reason, so handlers that print
    ``f"{path}: cannot write: {e.strerror}"`` stay one line too.
    """

    def __init__(self, path: str, reason: str, code: int = 0) -> None:
        super().__init__(code, reason)
        self.filename = path
        self.strerror = reason

    def __str__(self) -> str:
        return f"{self.filename}: cannot write: {self.strerror}"


# ------------------------------------------------------------ processes


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _boot_id() -> str | None:
    text = _read("/proc/sys/kernel/random/boot_id")
    if not text:
        return None
    return text.strip().replace("-", "")[:8] or None


def _start_time(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot, None when it is not running."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    rest = text[text.rfind(")") + 2 :].split()
    try:
        return int(rest[19])  # field 22, starttime
    except (IndexError, ValueError):
        return None


_BOOT = _boot_id()


def _identity() -> tuple[str, int, int] | None:
    """(boot, pid, start) of this process, None where /proc cannot say."""
    pid = os.getpid()
    start = _start_time(pid)
    if _BOOT is None or start is None:
        return None
    return _BOOT, pid, start


def tmp_name(name: str) -> str:
    """A temp file name for final name `name` that a later run can tell dead from alive."""
    ident = _identity()
    boot, pid, start = ident if ident is not None else ("0" * 8, os.getpid(), 0)
    head = f"{TMP_PREFIX}{boot}.{pid}.{start}.{secrets.token_hex(4)}."
    # The final name stays at the end (its extension picks formats, e.g. a video's
    # container); it is cut from the left to fit the file-name limit.
    room = _NAME_MAX - len(head)
    return head + name[-room:]


def is_stale(name: str) -> bool:
    """True when `name` is one of our temp files and the process that made it is gone."""
    m = _TMP_RE.match(name)
    if m is None:
        return False
    boot, pid, start = m.group(1), int(m.group(2)), int(m.group(3))
    if _BOOT is None or boot == "0" * 8 or start == 0:
        return False  # made where /proc could not say: never guess
    if boot != _BOOT:
        return True  # an earlier boot: no process of it still runs
    # Not running, or its pid now belongs to another process (started at another time).
    return _start_time(pid) != start


def clean_stale(folder: str) -> list[str]:
    """Remove the dead temp files of earlier runs in `folder`; returns the names removed.

    Only regular files with our exact naming scheme, owned by this user (any
    user for root), whose process is gone, are removed.
    """
    removed: list[str] = []
    try:
        names = [n for n in os.listdir(folder) if n.startswith(TMP_PREFIX)]
    except OSError:
        return removed
    euid = os.geteuid()
    for name in names:
        if not is_stale(name):
            continue
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or (euid != 0 and st.st_uid != euid):
                continue
            os.unlink(path)
            removed.append(name)
        except OSError:
            continue
    return removed


# --------------------------------------------------------------- targets


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (the app saves
    from a worker thread: setting the umask to read it races with other threads)."""
    text = _read("/proc/self/status") or ""
    for line in text.splitlines():
        if line.startswith("Umask:"):
            with contextlib.suppress(ValueError, IndexError):
                return int(line.split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _fd_link(path: str) -> int | None:
    """The descriptor of this process that `path` names through /proc or /dev/fd links."""
    seen = 0
    p = os.path.abspath(path)
    while seen < 40:
        m = _FD_LINK.match(p)
        if m is not None and (not p.startswith("/proc/") or _proc_is_self(p)):
            return int(m.group(1))
        try:
            target = os.readlink(p)
        except OSError:
            return None
        p = os.path.normpath(os.path.join(os.path.dirname(p), target))
        seen += 1
    return None


def _proc_is_self(p: str) -> bool:
    part = p.split("/")[2]
    return part in ("self", "thread-self") or part == str(os.getpid())


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class AtomicFile:
    """One output file, claimed on construction and written on `commit`.

    Write through `open()` (a file object on the temp file) or by name through
    `tmp` (for tools that want a path, such as a video encoder); then
    `commit()`, or `discard()` to leave the target as it was.  As a context
    manager it commits when the block ends normally and discards otherwise.

    `inputs` are the files the command reads: naming one of them is refused.
    Raises OutputError (one line) for any problem with the target.
    """

    def __init__(self, path: str | os.PathLike[str], *, inputs: Iterable[Any] = ()) -> None:
        self.path = os.fspath(path)
        self._file: IO[Any] | None = None
        self._done = False
        self.fd_target: int | None = _fd_link(self.path)
        st: os.stat_result | None = None
        if self.fd_target is None:
            try:
                st = os.stat(self.path)  # follows symlinks: the file they point to
            except FileNotFoundError:
                st = None
            except OSError as e:
                raise OutputError(self.path, e.strerror or str(e), e.errno or 0) from None
        else:
            try:
                st = os.fstat(self.fd_target)
            except OSError as e:
                raise OutputError(self.path, e.strerror or str(e), e.errno or 0) from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(self.path, "it is a folder, not a file", errno.EISDIR)
        self.special = self.fd_target is not None or (
            st is not None and not stat.S_ISREG(st.st_mode)
        )
        if st is not None and stat.S_ISREG(st.st_mode):
            self._refuse_inputs(st, inputs)
        self._old = st if not self.special else None
        if self.special:
            # Staged outside the target's folder (/dev is no place for temp files).
            self.real = self.path
            folder = tempfile.gettempdir()
        else:
            self.real = os.path.realpath(self.path)
            folder = os.path.dirname(self.real)
            if not os.path.isdir(folder):
                raise OutputError(self.path, f"no such folder {folder}", errno.ENOENT)
        clean_stale(folder)
        self.tmp = os.path.join(folder, tmp_name(os.path.basename(self.real)))
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise OutputError(self.path, e.strerror or str(e), e.errno or 0) from None
        os.close(fd)

    def _refuse_inputs(self, st: os.stat_result, inputs: Iterable[Any]) -> None:
        for item in inputs:
            if item is None:
                continue
            name = os.fspath(item)
            try:
                ist = os.stat(name)
            except OSError:
                continue
            if stat.S_ISREG(ist.st_mode) and _same_file(st, ist):
                raise OutputError(
                    self.path,
                    f"it is {name}, an input of this command (an output never replaces an input)",
                    errno.EINVAL,
                )

    def same_target(self, other: AtomicFile) -> bool:
        """True when both write one regular file (two outputs of a command must not)."""
        return not self.special and not other.special and self.real == other.real

    # ---------------------------------------------------------------- writing
    def open(self, mode: str = "wb", **kwargs: Any) -> IO[Any]:
        """A file object writing the temp file ("wb", or "w" for UTF-8 text with \\n)."""
        if "b" not in mode:
            kwargs.setdefault("encoding", "utf-8")
            kwargs.setdefault("newline", "\n")
        kwargs.setdefault("buffering", 1 << 20)
        self._file = open(self.tmp, mode, **kwargs)  # noqa: SIM115 - closed by commit/discard
        return self._file

    def write(self, data: bytes | str) -> None:
        """Write all of `data` (bytes, or text as UTF-8)."""
        f = self._file or self.open("wb")
        try:
            if isinstance(data, str) and "b" in f.mode:
                data = data.encode("utf-8")
            f.write(data)
        except OSError as e:
            self.discard()
            raise OutputError(self.path, e.strerror or str(e), e.errno or 0) from None

    def commit(self) -> None:
        """Make the output what was written; OutputError (temp file removed) on failure."""
        if self._done:
            return
        try:
            if self._file is not None:
                if not self._file.closed:
                    self._file.flush()
                    self._file.close()
                self._file = None
            if self.special:
                self._copy_in_place()
                os.unlink(self.tmp)
            else:
                self._replace()
        except OSError as e:
            self.discard()
            if isinstance(e, OutputError):
                raise
            raise OutputError(self.path, e.strerror or str(e), e.errno or 0) from None
        self._done = True

    def _replace(self) -> None:
        old = self._old
        fd = os.open(self.tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)  # also what a tool writing `tmp` by name left in the page cache
            os.fchmod(fd, old.st_mode & 0o7777 if old is not None else 0o666 & ~_umask())
            if old is not None and os.geteuid() == 0:
                with contextlib.suppress(OSError):
                    os.fchown(fd, old.st_uid, old.st_gid)
                    os.fchmod(fd, old.st_mode & 0o7777)  # chown clears set-id bits
        finally:
            os.close(fd)
        os.replace(self.tmp, self.real)
        with contextlib.suppress(OSError):  # make the rename itself durable
            dfd = os.open(os.path.dirname(self.real), os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _copy_in_place(self) -> None:
        with open(self.tmp, "rb") as src:
            if self.fd_target is not None:
                out = self.fd_target
                while chunk := src.read(_COPY_CHUNK):
                    _write_all(out, chunk)
                return
            out = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                while chunk := src.read(_COPY_CHUNK):
                    _write_all(out, chunk)
            finally:
                os.close(out)

    def discard(self) -> None:
        """Leave the target as it was and remove the temp file."""
        if self._done:
            return
        self._done = True
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_bytes(path: str | os.PathLike[str], data: bytes, *, inputs: Iterable[Any] = ()) -> None:
    """Write `data` as the whole of `path` (see AtomicFile); OutputError on failure."""
    out = AtomicFile(path, inputs=inputs)
    try:
        out.write(data)
    except BaseException:
        out.discard()
        raise
    out.commit()


def write_text(path: str | os.PathLike[str], text: str, *, inputs: Iterable[Any] = ()) -> None:
    """Write `text` (UTF-8, \\n line ends as given) as the whole of `path`."""
    write_bytes(path, text.encode("utf-8"), inputs=inputs)


def copy_to_stream(src: IO[Any], dst: IO[Any]) -> None:
    """Copy a staged output to an open stream (stdout); OSError as it comes."""
    shutil.copyfileobj(src, dst, _COPY_CHUNK)
    dst.flush()
