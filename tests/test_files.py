"""Writing outputs: atomic regular files, streams written in place, inputs protected, OS errors, signals."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import ROOT

from genomix.errors import GenomixError
from genomix.io import files
from genomix.io.files import (
    atomic_path,
    check_outputs,
    check_writable,
    open_output,
    output_folder,
    safe_name,
    safe_names,
)

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def tmpfile_supported(folder: Path) -> bool:
    """Whether this folder's file system can hold unnamed temporary files (O_TMPFILE)."""
    if not files._O_TMPFILE:
        return False
    try:
        os.close(os.open(folder, files._O_TMPFILE | os.O_WRONLY, 0o600))
    except OSError:
        return False
    return True


@pytest.fixture(params=["unnamed", "named"])
def temp_kind(request, monkeypatch, tmp_path):
    """Run a test with O_TMPFILE where the OS has it, and with the named temporary file used elsewhere."""
    if request.param == "unnamed" and not tmpfile_supported(tmp_path):
        pytest.skip("no O_TMPFILE here")
    if request.param == "named":
        monkeypatch.setattr(files, "_O_TMPFILE", 0)
    return request.param


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def one_line_error(call, fragment: str) -> str:
    with pytest.raises(GenomixError) as err:
        call()
    message = str(err.value)
    assert fragment in message and "\n" not in message, message
    return message


def write_to(path, inputs=(), data: str = "x\n") -> None:
    with open_output(path, inputs) as out:
        out.write(data)


# --- regular files: atomic -----------------------------------------------------------------------------


def test_regular_file_appears_only_when_complete(tmp_path, temp_kind):
    target = tmp_path / "out.tsv"
    with open_output(target) as out:
        out.write("a\tb\n")
        out.flush()
        assert not target.exists()
        hidden = names(tmp_path)
        assert hidden == [] if temp_kind == "unnamed" else len(hidden) == 1 and hidden[0].startswith(".out.tsv.")
    assert target.read_text() == "a\tb\n"
    assert names(tmp_path) == ["out.tsv"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_failure_keeps_the_old_file_and_leaves_nothing(tmp_path, temp_kind):
    old, new = tmp_path / "old.tsv", tmp_path / "new.tsv"
    old.write_text("old")
    for target in (old, new):
        with pytest.raises(RuntimeError), open_output(target) as out:
            out.write("partial" * 10000)
            raise RuntimeError("boom")
    assert old.read_text() == "old"
    assert names(tmp_path) == ["old.tsv"]


def test_binary_mode(tmp_path):
    with open_output(tmp_path / "b.bin", mode="wb") as out:
        out.write(b"\x00\xff")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"


def test_symlinked_output_replaces_the_file_it_points_to(tmp_path, temp_kind):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "out.tsv").write_text("old")
    (tmp_path / "link.tsv").symlink_to(tmp_path / "real" / "out.tsv")
    write_to(tmp_path / "link.tsv", data="new")
    assert (tmp_path / "link.tsv").is_symlink()
    assert (tmp_path / "real" / "out.tsv").read_text() == "new"
    assert names(tmp_path / "real") == ["out.tsv"]


# --- inputs are never overwritten -------------------------------------------------------------------------


def test_output_that_is_an_input_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "in.fa"
    data.write_text(">r\nACGT\n")
    (tmp_path / "sym.fa").symlink_to(data)
    os.link(data, tmp_path / "hard.fa")
    for output, inputs in [("in.fa", ["in.fa"]), ("./in.fa", ["in.fa"]), (data, ["in.fa"]), ("sym.fa", [data]),
                           ("in.fa", ["sym.fa"]), ("hard.fa", ["in.fa"]), ("in.fa", ["-", "cls=in.fa"])]:
        one_line_error(lambda o=output, i=inputs: write_to(o, i), "is also an input")
        one_line_error(lambda o=output, i=inputs: check_writable(o, i), "is also an input")
        with pytest.raises(GenomixError, match="is also an input"), atomic_path(output, inputs):
            pass
    assert data.read_text() == ">r\nACGT\n"
    write_to("other.tsv", ["in.fa", "-"])
    assert (tmp_path / "other.tsv").read_text() == "x\n"


# --- streams are written in place -------------------------------------------------------------------------


def test_dev_null_and_check_writable_on_streams(tmp_path):
    write_to(os.devnull)
    assert check_writable(os.devnull) == Path(os.devnull)
    assert check_writable("-") == Path("-")
    with atomic_path(os.devnull) as path:
        assert path == Path(os.devnull)
        path.write_text("ignored")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert check_writable(fifo) == fifo
    write_to(fifo, data="line\n" * 50000)
    reader.join(timeout=10)
    assert received == [b"line\n" * 50000]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert names(tmp_path) == ["pipe"]


def test_dev_fd_from_process_substitution_is_written_in_place(tmp_path):
    read_end, write_end = os.pipe()
    try:
        write_to(f"/dev/fd/{write_end}", data="through the pipe\n")
        os.close(write_end)
        assert os.read(read_end, 100) == b"through the pipe\n"
    finally:
        os.close(read_end)


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_process_substitution(tmp_path):
    script = ("import sys\nfrom genomix.io.files import open_output\n"
              "with open_output(sys.argv[1]) as o: o.write('hi\\n')")
    bash = f'{shlex.quote(sys.executable)} -c "$0" >(cat > {shlex.quote(str(tmp_path / "got"))}); wait'
    proc = subprocess.run(["bash", "-c", bash, script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for _ in range(100):  # bash does not wait for the substituted process
        if (tmp_path / "got").exists() and (tmp_path / "got").read_text():
            break
        time.sleep(0.05)
    assert (tmp_path / "got").read_text() == "hi\n"


def test_dev_fd_to_a_file_keeps_the_shell_redirection(tmp_path):
    # `genomix ... -o /dev/stdout >> log`: append through the shell's descriptor, never replace the file
    log = tmp_path / "log.txt"
    log.write_text("before\n")
    with open(log, "a") as handle:
        write_to(f"/dev/fd/{handle.fileno()}", data="after\n")
    assert log.read_text() == "before\nafter\n"
    assert names(tmp_path) == ["log.txt"]


def test_dash_is_stdout(capsys):
    write_to("-", data="to stdout\n")
    assert capsys.readouterr().out == "to stdout\n"


def test_reader_that_left_is_a_broken_pipe_not_an_error(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with pytest.raises(BrokenPipeError):
            write_to(f"/dev/fd/{write_end}", data="x" * 100000)
    finally:
        os.close(write_end)


# --- OS errors become one line naming the output ----------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_disk_full_names_the_output():
    one_line_error(lambda: write_to("/dev/full", data="x" * 100000), "/dev/full: cannot write (No space left")
    with pytest.raises(GenomixError, match="No space left"), atomic_path("/dev/full") as path:
        path.write_text("x" * 100000)


def test_disk_full_on_a_regular_file_leaves_nothing(tmp_path, monkeypatch, temp_kind):
    """ENOSPC from the file system, simulated where it arises: the write(2) of the output's descriptor."""
    write = os.write

    def full(fd: int, data: bytes) -> int:
        if fd > 2:
            raise OSError(28, os.strerror(28))
        return write(fd, data)

    monkeypatch.setattr(os, "write", full)
    target = tmp_path / "out.tsv"
    one_line_error(lambda: write_to(target, data="x" * 100000), "out.tsv: cannot write (No space left on device)")
    one_line_error(lambda: write_to(target, data="short"), "out.tsv: cannot write (No space left on device)")
    monkeypatch.undo()
    assert names(tmp_path) == []


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_file_size_limit_is_a_real_os_error(tmp_path):
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from genomix.errors import GenomixError
        from genomix.io.files import open_output
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            with open_output({str(tmp_path / "big.tsv")!r}) as out:
                out.write("x" * 100000)
        except GenomixError as err:
            sys.exit(str(err))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"{tmp_path / 'big.tsv'}: cannot write (File too large)"
    assert names(tmp_path) == []


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="no /proc")
def test_folder_where_no_file_can_be_created():
    one_line_error(lambda: write_to("/proc/genomix-out.tsv"), "/proc/genomix-out.tsv: cannot create a file in /proc")
    with pytest.raises(GenomixError, match="cannot create a file in /proc"), atomic_path("/proc/x.gmx"):
        pass


@pytest.mark.skipif(AS_ROOT, reason="permissions do not bind root")
def test_unwritable_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    one_line_error(lambda: check_writable(folder / "o.tsv"), "is not writable")
    one_line_error(lambda: write_to(folder / "o.tsv"), "cannot create a file in")


def test_missing_folder_and_directory_target(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(lambda: write_to("nowhere/o.tsv"), "nowhere/o.tsv: folder nowhere does not exist")
    one_line_error(lambda: write_to(tmp_path), "is a directory")
    assert names(tmp_path) == []


def test_atomic_path_names_the_output_on_os_errors_of_the_writer(tmp_path):
    full = r"m\.gmx: cannot write \(No space left on device\)"
    with pytest.raises(GenomixError, match=full), atomic_path(tmp_path / "m.gmx") as path:
        raise OSError(28, os.strerror(28), str(path))
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "m.gmx"):
        (tmp_path / "some-input.fa").read_text()  # an error about another file is not about the output
    assert names(tmp_path) == []


def test_atomic_path_finds_the_os_error_behind_a_library_error(tmp_path, monkeypatch):
    """safetensors names the errno in its message; an exception that names none (torch.save's RuntimeError) is
    the disk's when writing more to the temporary file fails, else a bug, passed on unchanged."""
    quota = r"m\.gmx: cannot write \(Disk quota exceeded\)$"
    with pytest.raises(GenomixError, match=quota) as err, atomic_path(tmp_path / "m.gmx") as path:
        path.write_bytes(b"partial")
        raise RuntimeError("Error while serializing: I/O error: Disk quota exceeded (os error 122)")
    assert err.value.exit_code == 2
    with pytest.raises(RuntimeError, match="a bug"), atomic_path(tmp_path / "m.gmx") as path:
        path.write_bytes(b"partial")
        raise RuntimeError("a bug")
    write = os.write

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, os.strerror(28))

    full_disk = r"cannot write \(No space left on device\)$"
    with pytest.raises(GenomixError, match=full_disk), atomic_path(tmp_path / "m.gmx") as path:
        path.write_bytes(b"partial")
        monkeypatch.setattr(os, "write", full)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    monkeypatch.setattr(os, "write", write)
    assert names(tmp_path) == []


def test_an_io_fault_of_the_storage_exits_1_and_says_it_is_not_the_command(tmp_path):
    fault = r"Input/output error: a fault of the disk"
    with pytest.raises(GenomixError, match=fault) as err, atomic_path(tmp_path / "m.gmx") as path:
        raise OSError(5, os.strerror(5), str(path))
    assert err.value.exit_code == 1
    assert names(tmp_path) == []


def test_the_command_line_exits_with_the_error_s_code(genomix_main, trained_model, test_fa, tmp_path, monkeypatch):
    import numpy as np

    def failing_save(file, array) -> None:
        raise OSError(5, os.strerror(5))

    monkeypatch.setattr(np, "save", failing_save)
    proc = genomix_main("embed", trained_model, test_fa, "-o", tmp_path / "e.npy", "--device", "cpu")
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines()[-1].startswith(f"genomix: error: {tmp_path / 'e.npy'}: cannot write "
                                                            "(Input/output error: a fault of the disk")
    assert names(tmp_path) == []


# --- signals ---------------------------------------------------------------------------------------------

WRITER = """
import sys, time
from genomix.io import files
from genomix.errors import Interrupted
if sys.argv[2] == "named":
    files._O_TMPFILE = 0
files.exit_on_sigterm()
try:
    if sys.argv[3] == "stream":
        with files.open_output(sys.argv[1]) as out:
            out.write("partial\\n")
            out.flush()
            print("writing", flush=True)
            time.sleep(60)
    else:
        with files.atomic_path(sys.argv[1]) as path:
            path.write_text("partial\\n")
            print("writing", flush=True)
            time.sleep(60)
except Interrupted as err:
    sys.exit(err.exit_code)
"""


def interrupted_writer(tmp_path: Path, kind: str, how: str, sig: int) -> int:
    out = tmp_path / "out" / "result.tsv"
    out.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out), kind, how], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stdout.readline() == b"writing\n"
        proc.send_signal(sig)
        return proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stdout.close()


@pytest.mark.parametrize(("kind", "how"), [("unnamed", "stream"), ("named", "stream"), ("named", "path")])
def test_sigterm_removes_the_temporary_file(tmp_path, kind, how):
    if kind == "unnamed" and not tmpfile_supported(tmp_path):
        pytest.skip("no O_TMPFILE here")
    assert interrupted_writer(tmp_path, kind, how, signal.SIGTERM) == 128 + signal.SIGTERM
    assert names(tmp_path / "out") == []


def test_sigkill_leaves_nothing_with_an_unnamed_temporary_file(tmp_path):
    if not tmpfile_supported(tmp_path):
        pytest.skip("no O_TMPFILE here")
    assert interrupted_writer(tmp_path, "unnamed", "stream", signal.SIGKILL) == -signal.SIGKILL
    assert names(tmp_path / "out") == []


def test_one_rule_turns_a_name_into_a_file_name():
    assert safe_name("E. coli/K-12+ä") == "E._coli_K-12+ä"  # no folder, no space; letters of any script kept
    assert safe_name("E. coli/K-12+ä", keep=".", ascii_only=True) == "E._coli_K_12__"  # a VCF key's alphabet
    assert safe_name("a/b") == safe_name("a b")  # two names, one file: callers compare results to refuse this


def test_names_that_would_be_one_file_get_one_each():
    """'a/b' and 'a:b' would both be a_b: a name already safe keeps its own, the others get a hash of themselves,
    the same whatever the order; a name given twice gets -2."""
    names = safe_names(["a/b", "a_b", "a:b", "c/d", "a/b"])
    assert names[1] == "a_b" and names[3] == "c_d" and names[4] == f"{names[0]}-2"
    assert len(set(names)) == 5 and all(n.startswith("a_b-") for n in (names[0], names[2]))
    assert safe_names(["a:b", "a/b"]) == [names[2], names[0]]


def test_a_folder_output_appears_with_its_files_or_not_at_all(tmp_path):
    """A new folder (and the folders above it) appears whole at the end; an existing one keeps its other files
    and gets the new ones; a failure leaves neither, nor the hidden folder they were written in."""
    new = tmp_path / "a" / "b"
    with output_folder(new, "--plots") as staging:
        (staging / "x.png").write_text("x")
        assert not new.exists()
    assert names(new) == ["x.png"] and names(tmp_path) == ["a"]
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o777 & ~files._UMASK
    (new / "mine.txt").write_text("kept")
    with pytest.raises(RuntimeError), output_folder(new, "--plots") as staging:
        (staging / "y.png").write_text("y")
        raise RuntimeError
    assert names(new) == ["mine.txt", "x.png"] and names(tmp_path / "a") == ["b"]
    with output_folder(new, "--plots") as staging:
        (staging / "x.png").write_text("new")
    assert names(new) == ["mine.txt", "x.png"] and (new / "x.png").read_text() == "new"


def test_folder_outputs_are_checked_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(GenomixError, match="--plots .*file/d/e: .*file is not a folder"):
        check_outputs([("-o", tmp_path / "o.tsv")], folders=[("--plots", tmp_path / "file" / "d" / "e")])
    with pytest.raises(GenomixError, match="--plots .*file: .*file is not a folder"):
        check_outputs([], folders=[("--plots", tmp_path / "file")])
    with pytest.raises(GenomixError, match="would both be one folder"):
        check_outputs([], folders=[("--plots", tmp_path / "d"), ("--motifs", tmp_path / "." / "d")])
    check_outputs([("-o", tmp_path / "o.tsv")], folders=[("--plots", tmp_path / "new" / "d"), ("--motifs", None)])
    assert names(tmp_path) == ["file"]


@pytest.mark.skipif(AS_ROOT, reason="root writes into any folder")
def test_a_folder_output_in_a_read_only_folder_is_refused(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(GenomixError, match="--plots .*ro/d: folder .*ro is not writable"):
        check_outputs([], folders=[("--plots", tmp_path / "ro" / "d")])
