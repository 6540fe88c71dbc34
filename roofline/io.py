"""Reading input files safely and writing output files so that a user's data is never lost.

Reading (``read_bytes``, ``read_text``, ``read_maybe_gzip``): only regular files are read (a FIFO, a
device such as /dev/zero or a folder is refused without blocking), and what is read is capped, before and
after gzip decompression, so a hostile or mistaken input fails with one line instead of filling memory.

Writing (``atomic_write``, ``write_text``): a temporary file in the target's folder, flushed and fsynced,
then renamed over the target. A failure (disk full, Ctrl-C, a kill) leaves the old file as it was; no
half-written file ever carries the target's name. Targets that are not regular files (``/dev/stdout``,
``/dev/full``, a FIFO) are written directly, since renaming over them would replace the device.

Folders (``replace_folder``): built aside in a temporary sibling and swapped in whole. The folder carries
a manifest (``MANIFEST``) of the files roofline wrote, with their SHA-256; an existing folder is only
replaced when it is empty or every file in it is one the manifest lists, unchanged.

Every failure raises ``InputFileError`` (reading) or ``OutputError`` (writing) with a one-line message
naming the path, the problem and the fix.
"""

import contextlib
import csv
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, BinaryIO

from roofline.errors import InputFileError, OutputError

MB = 1_000_000
# default caps: model / spec files are a few kB (a config.json with label maps, ~100 kB)
MAX_MAPPING_BYTES = 8 * MB
MANIFEST = "roofline-manifest.json"
_CHUNK = 1 << 20


# ------------------------------------------------------------------------------------------------
# reading


def _describe(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)


@contextlib.contextmanager
def open_regular(path: str | Path, what: str) -> Iterator[BinaryIO]:
    """Open ``path`` for binary reading if it is a regular file; yield the file object.

    Opens without blocking (a FIFO with no writer would otherwise hang), then checks the type of the
    opened file itself, so the check and the read see the same file. Raises InputFileError."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputFileError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise InputFileError(f"{what} path {path} is a folder, not a file; give the file inside it") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {what} file {path}: {_strerror(exc)}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise InputFileError(f"{what} path {path} is a folder, not a file; give the file inside it")
        if not stat.S_ISREG(mode):
            raise InputFileError(f"{what} path {path} is {_describe(mode)}, not a regular file; give a file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


def _too_big(path, what: str, limit: int, kind: str = "") -> InputFileError:
    return InputFileError(
        f"{what} file {path} is larger than {limit / MB:g} MB{kind}, the limit for a {what} "
        f"file; check that it is the right file"
    )


def read_bytes(path: str | Path, what: str, max_bytes: int = MAX_MAPPING_BYTES) -> bytes:
    """The bytes of regular file ``path``, at most ``max_bytes``. Raises InputFileError."""
    with open_regular(path, what) as fh:
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise InputFileError(f"cannot read {what} file {path}: {_strerror(exc)}") from None
    if len(data) > max_bytes:
        raise _too_big(path, what, max_bytes)
    return data


def decode_utf8(data: bytes, path: str | Path, what: str) -> str:
    """``data`` as UTF-8 text (a BOM is dropped). Raises InputFileError naming the byte offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{what} file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def read_text(path: str | Path, what: str, max_bytes: int = MAX_MAPPING_BYTES) -> str:
    """The UTF-8 text of regular file ``path``, at most ``max_bytes``. Raises InputFileError."""
    return decode_utf8(read_bytes(path, what, max_bytes), path, what)


def gunzip_bounded(data: bytes, path: str | Path, what: str, max_bytes: int) -> bytes:
    """Decompress gzip ``data`` (every member) without producing more than ``max_bytes``.

    Raises InputFileError for a truncated or corrupt stream and for output beyond the cap."""
    out, total = [], 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            while data:
                chunk = inflater.decompress(data, max_bytes + 1 - total)
                total += len(chunk)
                out.append(chunk)
                if total > max_bytes:
                    raise _too_big(path, what, max_bytes, " once decompressed")
                data = inflater.unconsumed_tail
                if inflater.eof:
                    break
            if not inflater.eof:
                raise InputFileError(f"{path}: the gzip stream is truncated; copy or export the {what} again")
        except zlib.error as exc:
            raise InputFileError(
                f"{path}: the gzip stream is corrupt ({exc}); copy or export the {what} again"
            ) from None
        data = inflater.unused_data.lstrip(b"\0")  # concatenated members (and zero padding) follow
    return b"".join(out)


def read_maybe_gzip(path: str | Path, what: str, max_bytes: int, max_decompressed_bytes: int) -> bytes:
    """The bytes of ``path``, decompressed when they start with the gzip magic, within both caps."""
    data = read_bytes(path, what, max_bytes)
    if data[:2] == b"\x1f\x8b":
        return gunzip_bounded(data, path, what, max_decompressed_bytes)
    if len(data) > max_decompressed_bytes:
        raise _too_big(path, what, max_decompressed_bytes)
    return data


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when paths ``a`` and ``b`` name the same existing file (links and ``..`` resolved)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """True when ``path`` is ``folder`` or lies below it (both resolved)."""
    try:
        path, folder = Path(path).resolve(), Path(folder).resolve()
    except (OSError, RuntimeError):
        return False
    return path == folder or folder in path.parents


# ------------------------------------------------------------------------------------------------
# writing


def _write_error(path, exc: OSError) -> OutputError:
    reason = _strerror(exc)
    if exc.errno == errno.ENOSPC:
        fix = "free some space or write elsewhere"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose a folder you can write to"
    elif exc.errno in (errno.ENOTDIR, errno.ENOENT, errno.EEXIST):  # EEXIST: mkdir met a file
        fix = "check the path: a part of it is missing or is a file, not a folder"
    elif exc.errno == errno.EISDIR:
        fix = "give a file name, not a folder"
    else:
        fix = "check the path and the disk"
    return OutputError(f"cannot write {path}: {reason}; {fix}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _umask_mode() -> int:
    return 0o666 & ~_umask()


def _parent(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str = "utf-8") -> Iterator[IO]:
    """Yield a file to write ``path``'s new content to; on success it replaces ``path`` in one rename.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path`` keeps its
    old content; OSError becomes OutputError. Non-regular targets (/dev/stdout, a FIFO) are written
    directly. Missing parent folders are created."""
    path = Path(path)
    kwargs = {} if "b" in mode else {"encoding": encoding, "newline": ""}
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _write_error(path, exc) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            with open(path, mode, **kwargs) as fh:
                yield fh
        except OSError as exc:
            raise _write_error(path, exc) from None
        return
    tmp = None
    try:
        parent = _parent(path)
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, stat.S_IMODE(st.st_mode) if st is not None else _umask_mode())
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def check_writable(path: str | Path) -> None:
    """Raise OutputError now if ``path`` cannot be written (a folder, a read-only place): for the second file of
    a command that writes two (``-o`` and ``--plot``), checked before the first is written, so that a failure
    on the second does not come after the first was replaced. Missing parent folders are created, as
    ``atomic_write`` would."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    parent = _parent(path)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise _write_error(path, exc) from None


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see ``atomic_write``)."""
    with atomic_write(path) as fh:
        fh.write(text)


def write_rows(path: str | Path, rows: list) -> None:
    """Write ``rows`` (dicts) to ``path`` atomically as CSV: one column per key, in the order keys first
    appear, an empty cell where a row lacks one (csv.DictWriter)."""
    with atomic_write(path) as fh:
        w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)


def write_chunks(path: str | Path, chunks: Iterable[str]) -> None:
    """Write an iterable of strings to ``path`` atomically, one chunk at a time (large outputs stream)."""
    with atomic_write(path) as fh:
        for chunk in chunks:
            fh.write(chunk)


# ------------------------------------------------------------------------------------------------
# report folders: built aside, swapped in whole


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _listing(folder: Path) -> list:
    """Every file below ``folder`` as a relative POSIX path (folders themselves not listed)."""
    out = []
    for root, dirs, files in os.walk(folder, onerror=_raise):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            out.append(Path(root, name).relative_to(folder).as_posix())
    return sorted(out)


def _raise(exc):
    raise exc


def write_manifest(folder: str | Path, tool_version: str = "") -> dict:
    """Record every file below ``folder`` with its SHA-256 in ``folder/MANIFEST``; return the mapping."""
    folder = Path(folder)
    files = {rel: sha256_file(folder / rel) for rel in _listing(folder) if rel != MANIFEST}
    manifest = {"written_by": "roofline", "version": tool_version, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return files


def check_replaceable(folder: str | Path) -> None:
    """Raise OutputError unless ``folder`` is missing, empty, or holds only files roofline wrote there
    (listed, unchanged, in its manifest). A user's own file is never deleted or overwritten."""
    folder = Path(folder)
    try:
        if not folder.exists() and not folder.is_symlink():
            return
        if folder.is_symlink() or not folder.is_dir():
            raise OutputError(
                f"cannot write the report folder {folder}: it is a file or a link, not a folder; choose another --out"
            )
        with os.scandir(folder) as entries:
            top = sorted(e.name for e in entries)
        fix = "choose another --out folder, or move those files away"
        if top and MANIFEST not in top:  # refused without walking the folder (it may be '/' or a home)
            shown = ", ".join(top[:3]) + (", ..." if len(top) > 3 else "")
            raise OutputError(f"{folder} already holds files roofline did not write ({shown}); {fix}")
        present = _listing(folder)
    except OSError as exc:
        raise _write_error(folder, exc) from None
    if not present:
        return
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise OutputError(
            f"{folder}/{MANIFEST} is not a roofline manifest, so the folder's files may be yours; {fix}"
        ) from None
    foreign = [rel for rel in present if rel != MANIFEST and rel not in files]
    if foreign:
        raise OutputError(f"{folder} holds files roofline did not write ({', '.join(foreign[:3])}); {fix}")
    changed = [rel for rel in present if rel != MANIFEST and sha256_file(folder / rel) != files[rel]]
    if changed:
        raise OutputError(
            f"{folder}: {', '.join(changed[:3])} changed since roofline wrote "
            f"{'it' if len(changed) == 1 else 'them'}; {fix}"
        )


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def replace_folder(folder: str | Path, tool_version: str = "") -> Iterator[Path]:
    """Yield a temporary folder beside ``folder`` to build the new content in; on success write its
    manifest and swap it in for ``folder`` whole, then delete the old content.

    Refuses (OutputError) before building when ``folder`` holds files roofline did not write. On any
    exception the temporary folder is removed and ``folder`` is left as it was. A kill during the swap
    leaves the old or the new folder under ``folder``'s name (one atomic exchange on Linux)."""
    folder = Path(folder)
    if folder.name in ("", ".", ".."):  # '.', '..', '/': build beside the real folder, not inside it
        folder = folder.resolve()
    check_replaceable(folder)
    parent = _parent(folder)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder.name}.roofline-new-"))
    except OSError as exc:
        raise _write_error(folder, exc) from None
    try:
        yield build
        try:
            write_manifest(build, tool_version)
            os.chmod(build, 0o777 & ~_umask())
            if folder.exists():
                check_replaceable(folder)  # again: nothing of the user's appeared while we built
                if _exchange(build, folder):
                    shutil.rmtree(build, ignore_errors=True)  # now the old content
                else:
                    old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder.name}.roofline-old-"))
                    os.rename(folder, old / folder.name)
                    os.rename(build, folder)
                    shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(build, folder)
        except OSError as exc:
            raise _write_error(folder, exc) from None
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
