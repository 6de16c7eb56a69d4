"""Writing outputs so that an interrupted or failed command never leaves a partial file or destroys an input.

Regular files are written atomically: into a temporary file beside the target, renamed over it only when
everything was written. On Linux the temporary file is unnamed (O_TMPFILE) until that moment, so even a
SIGKILL leaves nothing behind; elsewhere a hidden `.NAME.XXXX.tmp` is removed on any exception (and on
SIGTERM, once `exit_on_sigterm` is installed). Streams that cannot be renamed over — stdout, /dev/null,
FIFOs, `/dev/fd/N` from process substitution, character devices — are written directly. A folder output
(`--plots DIR`) is written into a hidden folder whose files move into place at the end (`output_folder`).
Every OS error (disk full, permission denied, read-only file system), and every failure of a library that writes by
name (torch.save, safetensors, pyBigWig, pysam) to write its file, becomes a one-line GenomixError naming the
output and the cause: exit code 2 where the user can fix it (free space, another folder), 1 for a fault of the
storage (`FAULTS`).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from genomix.errors import GenomixError, Interrupted
from genomix.io.reading import STDIN, split_input

STDOUT = "-"
_UMASK = os.umask(0)
os.umask(_UMASK)
_FD_NAME = re.compile(r"/dev/(?:fd/(\d+)|(stdout)|(stderr))|/proc/(?:self|\d+)/fd/(\d+)")
_O_TMPFILE = getattr(os, "O_TMPFILE", 0) if os.path.isdir("/proc/self/fd") else 0  # needs /proc to link it in


def safe_name(name: str, keep: str = ".+-", ascii_only: bool = False) -> str:
    """`name` (a class, a record id) as part of a file name: each character other than a letter, a digit, '_' or
    one of `keep` becomes '_', so that no name reaches into another folder or needs quoting in a shell.
    `ascii_only` keeps ASCII letters and digits only (for formats such as VCF keys). Different names can give
    one result: where each name needs a file of its own, callers compare the results."""
    return re.sub(rf"[^\w{re.escape(keep)}]", "_", name, flags=re.ASCII if ascii_only else 0)


def safe_names(names: Sequence[str]) -> list[str]:
    """`safe_name` of each of `names`, distinct where names differ: where several names would give one result
    ('a/b', 'a:b', 'a_b'), a name that is already safe keeps it and each other gets '-' and a short hash of
    itself, the same in every run; a name given again gets '-2', '-3'... by its order."""
    safe = [safe_name(n) for n in names]
    sources: dict[str, set[str]] = {}
    for name, result in zip(names, safe):
        sources.setdefault(result, set()).add(name)
    unique = [result if len(sources[result]) == 1 or name == result
              else f"{result}-{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}"
              for name, result in zip(names, safe)]
    seen: dict[str, int] = {}
    for i, result in enumerate(unique):
        seen[result] = seen.get(result, 0) + 1
        unique[i] = result if seen[result] == 1 else f"{result}-{seen[result]}"
    return unique


# I/O errors the user cannot fix from the command line (the disk, or the network file system under it, failed):
# exit code 1, as a run that failed, not 2, as a command to correct (a full disk, a quota, a read-only mount).
FAULTS = frozenset({errno.EIO, errno.ESTALE})
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how Rust's std::io::Error (safetensors) names the errno
_PROBE_BYTES = 1 << 20


def _fail(path: str | Path, what: str, err: OSError) -> GenomixError:
    if err.errno in FAULTS:
        return GenomixError(f"{path}: {what} ({err.strerror or err}: a fault of the disk or its file system, not of "
                            "the command; check it, then run again)", exit_code=1)
    return GenomixError(f"{path}: {what} ({err.strerror or err})")


def _probe(name: str) -> int | None:
    """The OS error that writing more to the file `name` meets now (None: none): the cause of a library's failure
    that does not say it (torch.save's and pyBigWig's RuntimeError), a full disk, a quota, a failing device. The
    file is a temporary one, discarded after."""
    try:
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            for _ in range(_PROBE_BYTES // 65536):
                os.write(fd, bytes(65536))
            os.fsync(fd)  # a network file system may report the error only here
        finally:
            os.close(fd)
    except OSError as err:
        return err.errno
    return None


@contextmanager
def _library_errors(path: str | Path, names: Sequence[str], probe: str | None) -> Iterator[None]:
    """Around a library writing the file `names` (the target, its temporary file): its failure, whatever it
    raised, becomes one line naming `path` and the OS error behind it, found in the exception (an OSError, a
    Rust "(os error N)"), else by writing more to the temporary file `probe`. An exception with no OS error behind
    it (a bug), or an OSError about another file, passes unchanged; so does a broken pipe (a reader that left)."""
    try:
        yield
    except (GenomixError, BrokenPipeError):
        raise
    except Exception as err:
        if isinstance(err, OSError) and err.errno:
            code = err.errno if err.filename in (None, *names) else None
        elif match := _RUST_OS_ERROR.search(str(err)):
            code = int(match[1])
        else:
            code = _probe(probe) if probe else None
        if code is None:
            raise
        raise _fail(path, "cannot write", OSError(code, os.strerror(code))) from None


def descriptor(path: str | Path) -> int | None:
    """The file descriptor a name like /dev/stdout or /dev/fd/63 (bash's `>(...)`) stands for, else None."""
    match = _FD_NAME.fullmatch(os.path.abspath(path))
    if match is None:
        return None
    number, out, err, proc = match.groups()
    return 1 if out else 2 if err else int(number or proc)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _target(path: str | Path, inputs: Sequence[str | Path]) -> tuple[Path, bool]:
    """(where to write, whether to write it directly rather than by atomic rename); checks `path` is usable.

    A symlink is followed, so the file it points to is replaced and the link kept. An output that is one of
    the `inputs` (also through a symlink, `./`, a hard link, or a `CLASS=path` argument) is refused: the
    input would be emptied before it is read.
    """
    given = Path(path)
    if descriptor(given) is not None:
        return given, True
    try:
        status = os.stat(given)
    except FileNotFoundError:
        status = None
    except OSError as err:
        raise _fail(path, "cannot write", err) from None
    if status is not None and stat.S_ISDIR(status.st_mode):
        raise GenomixError(f"{path}: is a directory")
    if status is not None and not stat.S_ISREG(status.st_mode):
        return given, True
    real = Path(os.path.realpath(given))
    for arg in inputs:
        source = split_input(str(arg))[1]
        if source == STDIN:
            continue
        with suppress(OSError):
            if Path(os.path.realpath(source)) == real or (status is not None and _same_file(os.stat(source), status)):
                raise GenomixError(f"{path}: is also an input ({arg}); writing it would destroy it")
    if not real.parent.is_dir():
        raise GenomixError(f"{path}: folder {real.parent if given.is_symlink() else given.parent} does not exist")
    return real, False


def check_writable(path: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """Fail early (before hours of work) when `path` cannot be written, or would overwrite one of `inputs`."""
    if str(path) == STDOUT:
        return Path(path)
    target, direct = _target(path, inputs)
    if not direct and not os.access(target.parent, os.W_OK):
        read_only = hasattr(os, "statvfs") and os.statvfs(target.parent).f_flag & os.ST_RDONLY
        why = "on a read-only file system" if read_only else "not writable"
        raise GenomixError(f"{path}: folder {target.parent} is {why}")
    if direct and descriptor(target) is None and not os.access(target, os.W_OK):
        raise GenomixError(f"{path}: not writable")
    return Path(path)


def _folder_base(flag: str, path: str | Path) -> Path:
    """The deepest existing folder on the way to the folder output `path` (`path` itself when it exists): its
    files are written there first, so that they move into place by renaming. Refuses a `path` that is, or lies
    under, something other than a folder, or whose folders cannot be written."""
    base = Path(path)
    while not os.path.exists(base):  # False under a regular file too
        base = base.parent
    if not os.path.isdir(base):
        raise GenomixError(f"{flag} {path}: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise GenomixError(f"{flag} {path}: folder {base} is not writable")
    return base


def check_outputs(outputs: Sequence[tuple[str, str | Path | None]], inputs: Sequence[str | Path] = (),
                  folders: Sequence[tuple[str, str | Path | None]] = ()) -> None:
    """All of a command's outputs, as (flag, path) pairs (None: not written), checked before any work: each
    file writable and not an input (`check_writable`), each of the `folders` (--plots DIR) one that can be
    created or written into (`output_folder`), and no two of them one file or folder (a symlink, `./` or a
    hard link included) or both stdout, where one would silently replace or mix into the other."""
    seen: dict[object, str] = {}
    for flag, path, folder in [*((f, p, False) for f, p in outputs), *((f, p, True) for f, p in folders)]:
        if path is None:
            continue
        if folder:
            _folder_base(flag, path)
            key: object = os.path.realpath(path)
        elif str(path) == STDOUT:
            key = STDOUT
        else:
            check_writable(path, inputs)
            key = os.path.realpath(path)
            with suppress(OSError):
                status = os.stat(path)
                key = (status.st_dev, status.st_ino) if stat.S_ISREG(status.st_mode) else key
        if key in seen:
            what = "stdout" if key == STDOUT else "one folder" if folder else "one file"
            raise GenomixError(f"{seen[key]} and {flag} {path} would both be {what}: give each its own path")
        seen[key] = f"{flag} {path}"


class _Temporary:
    """A new file beside `target` that replaces it only at `commit`; unnamed (O_TMPFILE) where possible."""

    def __init__(self, target: Path, shown: str | Path, unnamed: bool) -> None:
        self.target, self.shown, self.name = target, shown, None
        try:
            if unnamed and _O_TMPFILE:
                try:
                    self.fd = os.open(target.parent, _O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666)
                    return
                except OSError as err:  # a file system without O_TMPFILE: fall back to a named file
                    if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                        raise
            self.fd, self.name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        except OSError as err:
            raise _fail(shown, f"cannot create a file in {target.parent}", err) from None

    def commit(self) -> None:
        """Give the file its name (linking in an unnamed one) and its permissions, then rename it over target."""
        try:
            if self.name is None:
                name = tempfile.mktemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp")
                folder = os.open(self.target.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:  # a dir_fd makes Python call linkat(), which can follow the /proc link to the open file
                    os.link(f"/proc/self/fd/{self.fd}", Path(name).name, dst_dir_fd=folder, follow_symlinks=True)
                finally:
                    os.close(folder)
                self.name = name
            os.chmod(self.name, 0o666 & ~_UMASK)  # mkstemp files are private; outputs get the usual permissions
            os.replace(self.name, self.target)
        except OSError as err:
            raise _fail(self.shown, "cannot write", err) from None

    def discard(self) -> None:
        if self.name is not None:
            with suppress(FileNotFoundError):
                os.unlink(self.name)


class _Sink(io.RawIOBase):
    """The raw file under an output stream, so that a failed write names the output on one line.

    BrokenPipeError passes through: a reader that left (`| head`) is not an error.
    """

    def __init__(self, fd: int, shown: str | Path) -> None:
        super().__init__()
        self.fd, self.shown = fd, shown

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def write(self, data) -> int:
        try:
            return os.write(self.fd, data)
        except BrokenPipeError:
            raise
        except OSError as err:
            raise _fail(self.shown, "cannot write", err) from None

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self.fd)
            finally:
                super().close()


def _stream(fd: int, shown: str | Path, mode: str) -> IO:
    buffered = io.BufferedWriter(_Sink(fd, shown))
    return buffered if "b" in mode else io.TextIOWrapper(buffered, encoding="utf-8")


def _open_direct(target: Path, shown: str | Path) -> int:
    """A descriptor for a stream written in place: a duplicate for /dev/fd/N names, so appends stay appends."""
    number = descriptor(target)
    try:
        return os.dup(number) if number is not None else os.open(target, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as err:
        raise _fail(shown, "cannot write", err) from None


@contextmanager
def open_output(path: str | Path, inputs: Sequence[str | Path] = (), mode: str = "w") -> Iterator[IO]:
    """An output stream for `-o path` ('-': stdout), text (UTF-8) or binary ("wb"); see the module docstring.

    A regular file appears at `path` only when the block ends without an exception; `inputs` are the command's
    input arguments, which the output must not overwrite.
    """
    if str(path) == STDOUT:
        stream = sys.stdout.buffer if "b" in mode else sys.stdout
        try:
            yield stream
            stream.flush()
        except BrokenPipeError:
            raise
        except OSError as err:
            if err.filename is not None:  # not about stdout: some other file the block opened
                raise
            raise _fail("stdout", "cannot write", err) from None
        return
    target, direct = _target(path, inputs)
    temp = None if direct else _Temporary(target, path, unnamed=True)
    output = _stream(temp.fd if temp else _open_direct(target, path), path, mode)
    try:
        yield output
        output.flush()
        if temp:
            temp.commit()
    finally:
        with suppress(OSError, GenomixError):
            output.close()
        if temp:
            temp.discard()


@contextmanager
def atomic_path(path: str | Path, inputs: Sequence[str | Path] = ()) -> Iterator[Path]:
    """A path for libraries that write by name (torch.save, safetensors, pyBigWig, pysam, matplotlib): on success
    the file written there replaces `path`, on failure it is removed, and a failure to write it is one line
    (`_library_errors`); stdout and other streams are written directly.
    """
    if str(path) == STDOUT:
        path = "/dev/stdout"
    target, direct = _target(path, inputs)
    temp = None if direct else _Temporary(target, path, unnamed=False)
    if temp:
        os.close(temp.fd)
    try:
        with _library_errors(path, [str(target), *([temp.name] if temp else [])], temp and temp.name):
            yield target if direct else Path(temp.name)
        if temp:
            temp.commit()
    finally:
        if temp:
            temp.discard()


@contextmanager
def output_folder(path: str | Path, flag: str) -> Iterator[Path]:
    """A new hidden folder for the files of the folder output `path` (`flag` names it in errors): when the block
    ends without an exception they move into `path`, else they are removed. A new `path` appears whole (created
    with the folders above it); one that exists keeps its other files, and only those of the same names are
    replaced. Enter it in the command's ExitStack after the main output, so that the main output appears last."""
    target = Path(path)
    base = _folder_base(flag, path)
    try:
        staging = Path(tempfile.mkdtemp(dir=base, prefix=f".{target.name}.", suffix=".tmp"))
    except OSError as err:
        raise _fail(f"{flag} {path}", f"cannot create a folder in {base}", err) from None
    try:
        yield staging
        _move_in(staging, target, f"{flag} {path}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_in(staging: Path, target: Path, shown: str) -> None:
    """The files of `staging` into the folder `target`: the whole folder renamed where `target` is new."""
    try:
        if os.path.isdir(target):
            for name in sorted(os.listdir(staging)):
                os.replace(staging / name, target / name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(staging, 0o777 & ~_UMASK)  # mkdtemp folders are private; outputs get the usual permissions
            os.rename(staging, target)
    except OSError as err:
        raise _fail(shown, "cannot write", err) from None


def printed_by(call: Callable[[], object]) -> str:
    """Run `call` with file descriptor 2 caught, and return what was printed there: how C libraries that print
    instead of raising (libBigWig) report a failure."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            call()
            caught.seek(0)
            return caught.read().decode(errors="replace")
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def abandon(close: Callable[[], object]) -> None:
    """Close a library's writer after a failure, quietly: its file is discarded and the one-line error says why,
    so neither the library's second error (closing fails too) nor what its C code prints on stderr (libBigWig's
    "The output is likely truncated") is for the user."""
    with suppress(Exception):
        printed_by(close)


def exit_on_sigterm() -> None:
    """Make SIGTERM (`kill`, a batch scheduler's time limit) raise Interrupted, like Ctrl-C raises
    KeyboardInterrupt, so that `with` blocks unwind and remove their temporary files instead of dying at once.

    Further SIGTERMs are ignored, so that they cannot cut that cleanup short; SIGKILL still ends the process.
    Call it from the main thread (Python runs signal handlers there).
    """

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signum, signal.SIG_IGN)
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, interrupt)
