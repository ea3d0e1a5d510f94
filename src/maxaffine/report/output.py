"""Where a report goes: the rules for the output folder, the manifest, the atomic switch.

The user's files are never deleted or overwritten. The rules, checked before any analysis
runs (:func:`check_destination`) and again right before the switch (:func:`write_files`):

- a **new** folder (missing parents are created): the report is written into a hidden
  sibling staging folder and renamed into place in one step;
- an **empty** folder: the finished files are moved into it with signals held, and removed
  again if anything fails, so the folder ends complete or as empty as it was;
- a folder holding a **previous maxaffine report** (recognised by its manifest,
  ``maxaffine-manifest.json``, which lists every file maxaffine wrote with its SHA-256):
  replaced only with ``overwrite=True``, and only when every entry of the folder is a file the
  manifest lists, unchanged (or a folder holding such files). Anything else there (a file of
  yours, an edited figure, a symbolic link) is named and the replacement refused: move it
  out first. The new report is staged beside the old one and the two are switched by one
  rename (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere two renames with SIGINT/SIGTERM
  held); then the old report's files are deleted one by one, each only if its hash still
  matches the manifest;
- anything else (a non-empty folder with no manifest, a file, a symbolic link): refused with
  the reason and the fix.

Symbolic links are never followed inside the folder. Staging folders are removed on every
exit that runs Python code (errors, Ctrl-C, and SIGTERM/SIGHUP under the command line), and
error messages name the folder you gave, never the staging folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import signal
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InputError

#: Name of the manifest written into every report folder.
MANIFEST = "maxaffine-manifest.json"
_FORMAT = "maxaffine-report-manifest"
_STAGING = ".maxaffine-staging-"
_SHOWN = 8  # foreign entries named in a refusal before "and N more"


@dataclass(frozen=True)
class Destination:
    """The checked state of an output folder.

    Attributes
    ----------
    path : Path
        The folder as given, made absolute (symbolic links in its parents are kept).
    state : str
        ``"new"`` (does not exist), ``"empty"`` or ``"report"`` (a previous report that may
        be replaced).
    previous : dict or None
        The previous report's manifest ``{relative path: sha256}`` when ``state == "report"``.
    """

    path: Path
    state: str
    previous: dict | None = None


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _safe_relpath(name: object) -> bool:
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return False
    p = PurePosixPath(name)
    return not p.is_absolute() and all(part not in ("", ".", "..") for part in p.parts) \
        and str(p) == name and name != MANIFEST


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest of a report folder as ``{relative path: sha256}``, or None if it has none.

    A manifest that is a symbolic link, unreadable or malformed counts as none.
    """
    path = Path(folder) / MANIFEST
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        return None
    files = doc.get("files")
    if not isinstance(files, dict):
        return None
    out = {}
    for name, entry in files.items():
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not _safe_relpath(name) or not isinstance(digest, str):
            return None
        out[name] = digest
    return out


def _foreign_entries(folder: Path, previous: dict) -> list[str]:
    """Entries of ``folder`` that the manifest does not account for (never follows links)."""
    allowed_dirs = {str(PurePosixPath(n).parent) for n in previous} - {"."}
    allowed_dirs |= {str(p) for n in allowed_dirs for p in PurePosixPath(n).parents} - {"."}
    foreign: list[str] = []

    def unreadable(err: OSError) -> None:
        where = Path(err.filename or folder)
        foreign.append(f"{where.relative_to(folder).as_posix() if where != folder else '.'} "
                       f"(unreadable: {err.strerror})")

    for root, dirs, files in os.walk(folder, followlinks=False, onerror=unreadable):
        rel_root = PurePosixPath(Path(root).relative_to(folder).as_posix())
        for name in sorted(dirs):
            rel = str(rel_root / name) if str(rel_root) != "." else name
            if os.path.islink(os.path.join(root, name)):
                foreign.append(f"{rel} (a symbolic link)")
            elif rel not in allowed_dirs:
                foreign.append(f"{rel}/ (a folder maxaffine did not write)")
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in sorted(files):
            rel = str(rel_root / name) if str(rel_root) != "." else name
            full = os.path.join(root, name)
            if rel == MANIFEST:
                continue
            try:
                mode = os.lstat(full).st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode):
                foreign.append(f"{rel} (a symbolic link)")
            elif not stat.S_ISREG(mode) or rel not in previous:
                foreign.append(f"{rel} (not written by maxaffine)")
            elif _sha256(full) != previous[rel]:
                foreign.append(f"{rel} (changed since maxaffine wrote it)")
    return foreign


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _is_empty(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return next(it, None) is None


def check_destination(out: str | os.PathLike, *, overwrite: bool = False) -> Destination:
    """Check that a report may be written to ``out``, before any work is done.

    Parameters
    ----------
    out : path
        The output folder.
    overwrite : bool
        Allow replacing a previous maxaffine report there.

    Returns
    -------
    Destination

    Raises
    ------
    InputError
        ``out`` (or one of its parents) is a file, ``out`` is a symbolic link, a folder that
        cannot be written, a non-empty folder that holds no maxaffine report, a previous report
        without ``overwrite=True``, or a previous report next to files maxaffine did not write
        (each named). The message says how to proceed.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     (Path(tmp) / "notes.txt").write_text("mine")
    ...     try:
    ...         check_destination(tmp)
    ...     except InputError as exc:
    ...         print("refused:", "not empty" in str(exc))
    4
    refused: True
    """
    given = Path(out)
    path = Path(os.path.abspath(given))
    if path.parent == path:
        raise InputError(f"--out {given} is a filesystem root; choose a folder for the report")
    if os.path.islink(path):
        raise InputError(f"--out {given} is a symbolic link; maxaffine does not write through "
                         f"links: pass the folder it points to ({os.path.realpath(path)}) or a "
                         "new folder")
    if not path.exists():
        ancestor = path.parent
        while not ancestor.exists() and ancestor.parent != ancestor:
            if os.path.islink(ancestor):  # a dangling link
                raise InputError(f"--out {given}: {ancestor} is a broken symbolic link; "
                                 "choose another --out")
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise InputError(f"--out {given}: {ancestor} is a file, so no folder can be created "
                             "under it; choose another --out")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise InputError(f"--out {given} cannot be created: {ancestor} is not writable "
                             "(permission denied); choose a folder you can write to")
        return Destination(path, "new")
    if not path.is_dir():
        raise InputError(f"--out {given} is a file, not a folder; choose a new folder name "
                         "(maxaffine never overwrites it)")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise InputError(f"--out {given} is not writable (permission denied); choose a folder "
                         "you can write to")
    if _is_empty(path):
        return Destination(path, "empty")
    previous = read_manifest(path)
    if previous is None:
        raise InputError(
            f"--out {given} is not empty and holds no maxaffine report (no {MANIFEST}); "
            "maxaffine never writes into a folder of your files: choose a new or empty folder, "
            f"e.g. --out {given / 'maxaffine-report'}")
    if not overwrite:
        raise InputError(f"--out {given} holds a previous maxaffine report; pass --overwrite "
                         "to replace it, or choose another --out")
    foreign = _foreign_entries(path, previous)
    if foreign:
        raise InputError(
            f"--out {given} holds a previous maxaffine report but also entries maxaffine did "
            f"not write or that changed since: {_listing(foreign)}. maxaffine never deletes "
            f"those: move them out of {given}, or choose another --out")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise InputError(f"--out {given}: replacing a report needs write access to the folder "
                         f"that holds it, {path.parent} (permission denied); choose another "
                         "--out")
    return Destination(path, "report", previous)


# -- signals ---------------------------------------------------------------------------------
_HELD = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Defer SIGINT/SIGTERM/SIGHUP (delivered on exit) so a switch cannot be cut in half."""
    if not hasattr(signal, "pthread_sigmask") or \
            threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2``); False where unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                   ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EINVAL),
               getattr(errno, "EOPNOTSUPP", errno.EINVAL)):
        return False
    raise OSError(err, os.strerror(err))


def _switch(staging: Path, target: Path) -> None:
    """Put ``staging`` at ``target`` and the old ``target`` at ``staging``, all or nothing."""
    if _exchange(staging, target):
        return
    aside = staging.with_name(staging.name + "-old")
    os.rename(target, aside)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(aside, target)
        raise
    os.rename(aside, staging)


# -- writing ---------------------------------------------------------------------------------
def _new_folder(parent: Path, prefix: str) -> Path:
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(path)  # mode 0o777 minus the umask, like any folder the user creates
            return path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free staging name", str(parent))


def _write_tree(root: Path, files: Mapping[str, bytes]) -> dict[str, str]:
    digests: dict[str, str] = {}
    for name in sorted(files):
        if not _safe_relpath(name):
            raise ValueError(f"report file name {name!r} must be a relative path inside the "
                             "report folder")
        data = bytes(files[name])
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as fh:
            fh.write(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def _manifest_bytes(digests: dict[str, str], files: Mapping[str, bytes]) -> bytes:
    from .. import __version__

    doc = {"format": _FORMAT, "version": 1, "maxaffine": __version__,
           "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "note": ("Written by maxaffine. It replaces this folder (--overwrite) only while "
                    "every file here is listed below, unchanged."),
           "files": {n: {"sha256": d, "bytes": len(files[n])} for n, d in digests.items()}}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _remove_own(root: Path, digests: Mapping[str, str], *, manifest: bool = True) -> bool:
    """Delete the files of ``digests`` under ``root`` whose content still matches, then the
    folders they leave empty and ``root``. Returns True if ``root`` is gone."""
    for name, digest in digests.items():
        path = root / name
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(path).st_mode) and _sha256(path) == digest:
                os.unlink(path)
    if manifest:
        with contextlib.suppress(OSError):
            if read_manifest(root) is not None:
                os.unlink(root / MANIFEST)
    folders = {root / p for n in digests for p in PurePosixPath(n).parents if str(p) != "."}
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(folder)
    try:
        os.rmdir(root)
        return True
    except OSError:
        return not root.exists()


def _cleanup_staging(staging: Path) -> None:
    """Remove a staging folder that holds only the new report: maxaffine created it under a
    random name moments ago, and nothing else writes there (links inside are not followed)."""
    shutil.rmtree(staging, ignore_errors=True)


def _rename_noreplace(a: Path, b: Path) -> None:
    """Rename ``a`` to ``b``, failing (never replacing) if ``b`` exists."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        fn = None
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                       ctypes.c_uint]
        if fn(-100, os.fsencode(a), -100, os.fsencode(b), 1) == 0:  # RENAME_NOREPLACE
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, getattr(errno, "EOPNOTSUPP", errno.EINVAL)):
            raise OSError(err, os.strerror(err), str(b))
    if os.path.lexists(b):
        raise FileExistsError(errno.EEXIST, "appeared while the report was written", str(b))
    os.rename(a, b)


def write_files(out: str | os.PathLike, files: Mapping[str, bytes], *,
                overwrite: bool = False) -> Path:
    """Write a report's files (relative path → bytes) into ``out`` with a manifest, atomically.

    Parameters
    ----------
    out : path
        The report folder (see the module docstring for the rules).
    files : mapping of str to bytes
        Relative POSIX paths inside the folder (``"figures/a.png"``) and their content.
    overwrite : bool
        Replace a previous maxaffine report in ``out``.

    Returns
    -------
    Path
        ``out`` (absolute).

    Raises
    ------
    InputError
        The destination is refused (see :func:`check_destination`) or cannot be written; the
        message names ``out`` and the cause. Nothing of an old report or of yours is changed.
    """
    dest = check_destination(out, overwrite=overwrite)
    path, given = dest.path, Path(out)
    try:
        if dest.state == "empty":
            _fill_empty(path, files)
        else:
            _stage_and_switch(dest, files, overwrite)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(f"cannot write the report to {given}: {reason}; nothing there was "
                         "changed. Free some space or choose another --out") from None
    return path


def _stage_and_switch(dest: Destination, files: Mapping[str, bytes], overwrite: bool) -> None:
    path = dest.path
    created: list[Path] = []
    if dest.state == "new":
        missing = []
        p = path.parent
        while not p.exists():
            missing.append(p)
            p = p.parent
        for p in reversed(missing):
            os.mkdir(p)
            created.append(p)
    staging = None
    digests: dict[str, str] = {}
    holds = "new"
    done = False
    try:
        staging = _new_folder(path.parent, f".{path.name}{_STAGING}")
        digests = _write_tree(staging, files)
        (staging / MANIFEST).write_bytes(_manifest_bytes(digests, files))
        with _signals_held():
            now = check_destination(path, overwrite=overwrite)  # re-check just before
            if now.state == "new":
                _rename_noreplace(staging, path)
                holds = "none"
            elif now.state == "report":
                _switch(staging, path)
                holds = "old"
                digests = now.previous or {}
            else:  # became empty meanwhile
                _fill_empty(path, files)
                holds = "new"
            done = True
    finally:
        with _signals_held():
            if staging is not None and holds != "none":
                if holds == "old":
                    if not _remove_own(staging, digests):
                        import warnings

                        warnings.warn(f"the previous report in {path} was replaced; entries "
                                      "added to it meanwhile were kept in "
                                      f"{staging}", stacklevel=3)
                else:
                    _cleanup_staging(staging)
            if not done:
                for p in reversed(created):
                    with contextlib.suppress(OSError):
                        os.rmdir(p)


def _fill_empty(path: Path, files: Mapping[str, bytes]) -> None:
    """Write into an existing empty folder (keeping its mode and owner); all or nothing."""
    staging = _new_folder(path, _STAGING)
    digests: dict[str, str] = {}
    moved: list[str] = []
    ok = False
    try:
        digests = _write_tree(staging, files)
        (staging / MANIFEST).write_bytes(_manifest_bytes(digests, files))
        tops = sorted({PurePosixPath(n).parts[0] for n in digests})
        with _signals_held():
            for top in tops + [MANIFEST]:
                _rename_noreplace(staging / top, path / top)
                moved.append(top)
            ok = True
    finally:
        with _signals_held():
            if not ok:
                for top in moved:  # back into staging, then delete as ours
                    with contextlib.suppress(OSError):
                        os.rename(path / top, staging / top)
            _cleanup_staging(staging)


__all__ = ["MANIFEST", "Destination", "check_destination", "read_manifest", "write_files"]
