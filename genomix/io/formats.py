"""Output formats by suffix: one table for every command, and one check of an output path against the formats a
command writes, so that every command reads a suffix the same way and refuses an unknown one with the same message.

A compressed output is a format of its own (`vcf.gz`: bgzip with a tabix index is not a .vcf gzipped after the
fact), named by its base format and the compression suffix.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from genomix.errors import GenomixError
from genomix.io.files import STDOUT, descriptor

FORMATS = {".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet", ".npy": "npy", ".npz": "npz",
           ".bedgraph": "bedgraph", ".bg": "bedgraph", ".bw": "bigwig", ".bigwig": "bigwig", ".vcf": "vcf",
           ".kraken": "kraken", ".kreport": "kreport", ".kreport2": "kreport"}
COMPRESSION = ".gz"
SEEKING = ("bigwig", "parquet")  # formats whose writers go back in the file: a pipe or a device cannot take them


def is_stdout(path: str | Path | None) -> bool:
    return path is None or str(path) == STDOUT


def is_stream(path: str | Path | None) -> bool:
    """Whether `path` names an existing pipe, device or socket rather than a regular file (or nothing yet)."""
    if is_stdout(path) or descriptor(path) is not None:  # /dev/stdout, /dev/fd/63: a stream whatever it points to
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode) and not stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def check_seekable(path: str | Path | None, flag: str = "-o", chosen: str | None = None) -> None:
    """A format written by going back in the file (`SEEKING`; `chosen` by --format, else the suffix's) refuses a
    pipe or a device, in one line."""
    found = chosen or format_of(path)
    if found in SEEKING and is_stream(path):
        raise GenomixError(f"{flag} {path}: {found} is written by going back in the file, which a pipe or a device "
                           "cannot do: give a regular file")


def suffix_of(path: str | Path) -> str:
    """The suffix that names a file's format, in lower case: the last, with the one before it when the last is
    the compression suffix ('.vcf.gz')."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    return "".join(suffixes[-2:]) if len(suffixes) > 1 and suffixes[-1] == COMPRESSION else "".join(suffixes[-1:])


def format_of(path: str | Path | None) -> str | None:
    """The format a path's suffix names, or None (stdout, or a suffix of no known format)."""
    if is_stdout(path):
        return None
    suffix = suffix_of(path)
    if suffix.endswith(COMPRESSION) and suffix != COMPRESSION:
        base = FORMATS.get(suffix.removesuffix(COMPRESSION))
        return base and base + COMPRESSION
    return FORMATS.get(suffix)


def suffixes(name: str) -> list[str]:
    """The suffixes of a format ('bedgraph': .bedgraph and .bg)."""
    base = name.removesuffix(COMPRESSION)
    end = COMPRESSION if base != name else ""
    return [suffix + end for suffix, format_name in FORMATS.items() if format_name == base]


def check_format(chosen: str | None, allowed: Sequence[str]) -> None:
    """--format names one of the formats the command writes (`allowed`), or is not given (None)."""
    if chosen is not None and chosen not in allowed:
        raise GenomixError(f"--format {chosen}: choose {', '.join(allowed)}")


def output_format(path: str | Path | None, allowed: Sequence[str], default_for_stream: str | None,
                  flag: str = "-o", chosen: str | None = None) -> str:
    """The format of the output `path`, one of `allowed`: `chosen` (--format) where given, else by the suffix;
    stdout ('-' or None) is written as `default_for_stream` unless chosen, and refused where that is None (a
    command that needs a file)."""
    choices = ", ".join(suffix for name in allowed for suffix in suffixes(name))
    check_format(chosen, allowed)
    if is_stdout(path) or is_stream(path) and not suffix_of(path):  # `-`, /dev/stdout, a FIFO, >(gzip > x.gz)
        if default_for_stream is None:
            raise GenomixError(f"{flag} {path or STDOUT}: this output cannot go to a stream; give a file ({choices})")
        found = chosen or default_for_stream
    else:
        found = chosen or format_of(path)
        if found not in allowed:
            stream = f", or '{STDOUT}' for {default_for_stream} on stdout" if default_for_stream else ""
            raise GenomixError(f"{flag} {path}: unknown output format {suffix_of(path) or '(no suffix)'!r}; "
                               f"choose {choices}{stream}")
    check_seekable(path, flag, found)
    return found
