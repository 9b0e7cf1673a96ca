"""The one rule for writing a design folder under the output root.

Every command that writes rtl_out/<name>/ goes through `claim_design`:

- the name is a plain identifier, so the folder is always a direct child of the root;
- the target is replaced only when hwgen wrote it (integrity marker), and never when it
  is, holds, or lies inside an input checkpoint's folder;
- a lock file (.<name>.lock) taken before the compile stops a second run of the same
  design at once, and tells a leftover temporary folder from one a live run is writing;
- the new design is sealed and swapped in with one atomic rename exchange, so an
  interruption at any instant leaves the old or the new design whole.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import integrity
from .errors import InputError

MAX_NAME = 64
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TMP_TAG = "hwgen-tmp-"  # .<name>.hwgen-tmp-XXXX: a design being written (or a leftover)
OLD_TAG = "hwgen-old-"  # .<name>.hwgen-old-XXXX: the old design set aside by the fallback swap
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def validate_design_name(name: str) -> str:
    """Return name if it is a plain identifier of at most MAX_NAME characters."""
    if not isinstance(name, str) or len(name) > MAX_NAME or not _NAME.fullmatch(name):
        shown = repr(name) if len(str(name)) <= 80 else repr(str(name)[:80]) + "..."
        raise InputError(
            f"design name {shown} must be a plain identifier: letters, digits and "
            f"underscores, not starting with a digit, at most {MAX_NAME} characters "
            "(no '/', '.' or '..')"
        )
    return name


@dataclass(frozen=True)
class DesignClaim:
    """The right, held under the design's lock, to replace root/name."""

    root: Path
    name: str

    @property
    def path(self) -> Path:
        return self.root / self.name

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """Yield an empty temporary folder; when the block ends without error it is
        sealed and swapped in as root/name. A failure leaves the old design as it was."""
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{self.name}.{TMP_TAG}", dir=self.root))
        except OSError as e:
            raise InputError(
                f"{self.root}: cannot write in the output folder ({_why(e)})"
            ) from None
        try:
            yield tmp
            integrity.seal(tmp)
            tmp.chmod(0o755)
            _check_replaceable(self.path)
            old = _swap_in(tmp, self.path)
            if old is not None:
                _remove(old)
        finally:
            _remove(tmp)  # what a failed or interrupted build left half written


@contextmanager
def claim_design(out_root: Path, name: str, inputs: Sequence[Path]) -> Iterator[DesignClaim]:
    """Check name and target, take the design's lock and clean what a killed run left.

    `inputs` are the checkpoint paths the build reads: the target may not be one of their
    folders, an ancestor of one, or inside one. Call this before loading or compiling,
    and write the design with `claim.staging()` inside the block.
    """
    validate_design_name(name)
    out_root = Path(out_root)
    _refuse_overlap(out_root / name, inputs)
    _check_replaceable(out_root / name)  # a refusal creates nothing; checked again when locked
    created = _make_root(out_root)
    with _locked(out_root, name):
        try:
            _recover(out_root, name)
            _check_replaceable(out_root / name)
            yield DesignClaim(out_root, name)
        except BaseException:
            if created is not None:  # a failed first build leaves no empty output folder
                (out_root / f".{name}.lock").unlink(missing_ok=True)
                _unmake_root(out_root, created)
            raise


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def _refuse_overlap(target: Path, inputs: Sequence[Path]) -> None:
    t = target.resolve()
    for ckpt in inputs:
        p = Path(ckpt)
        folder = (p if p.is_dir() else p.parent).resolve()
        if t == folder or t in folder.parents or folder in t.parents:
            raise InputError(
                f"{target}: refusing to write the design over or into the checkpoint "
                f"folder {folder}; pick another --design or --out"
            )


def _make_root(out_root: Path) -> Path | None:
    """Create out_root; return the topmost folder this created (None if it existed)."""
    created = None
    for p in (out_root, *out_root.parents):
        if os.path.lexists(p):
            break
        created = p
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{out_root}: the output folder is a file, not a folder") from None
    except OSError as e:
        raise InputError(f"{out_root}: cannot create the output folder ({_why(e)})") from None
    if not out_root.is_dir():
        raise InputError(f"{out_root}: the output folder is not a folder")
    return created


def _unmake_root(out_root: Path, top: Path) -> None:
    """Remove the folders _make_root created, from out_root up to top, while empty."""
    for p in (out_root, *out_root.parents):
        try:
            p.rmdir()
        except OSError:
            return
        if p == top:
            return


@contextmanager
def _locked(out_root: Path, name: str) -> Iterator[None]:
    path = out_root / f".{name}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise InputError(f"{out_root}: cannot write in the output folder ({_why(e)})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"design '{name}' is being written by another hwgen run ({path} is locked); "
                "wait for it to finish"
            ) from None
        except OSError as e:
            raise InputError(f"{path}: cannot lock the design ({_why(e)})") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _leftovers(out_root: Path, name: str, tag: str) -> list[Path]:
    return sorted(out_root.glob(f".{name}.{tag}*"))


def _recover(out_root: Path, name: str) -> None:
    """Undo what a killed run left (only called under the design's lock).

    A fallback swap killed between its two renames leaves no design and the old one set
    aside: put it back. Everything else with our temporary prefixes is debris.
    """
    final = out_root / name
    if not os.path.lexists(final):
        asides = _leftovers(out_root, name, OLD_TAG)
        for aside in sorted(asides, key=lambda p: p.lstat().st_mtime, reverse=True):
            if aside.is_dir() and not aside.is_symlink() and integrity.is_hwgen_design(aside):
                aside.rename(final)
                break
    for debris in _leftovers(out_root, name, TMP_TAG) + _leftovers(out_root, name, OLD_TAG):
        _remove(debris)


def _check_replaceable(target: Path) -> None:
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_dir():
        raise InputError(
            f"{target}: exists and is not a design folder hwgen wrote; "
            "move it away or pick another --design"
        )
    if not integrity.is_hwgen_design(target):
        raise InputError(
            f"{target}: exists and was not written by hwgen (no '{integrity.MARKER}' "
            f"marker in {integrity.MANIFEST}); move it away or pick another --design"
        )


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False if unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(tmp: Path, final: Path) -> Path | None:
    """Move tmp to final; return where the old design now is (None if there was none).

    SIGINT and SIGTERM wait until the renames are done, so Ctrl-C cannot land between
    them; after a SIGKILL there, `_recover` puts the old design back.
    """
    blocked = {signal.SIGINT, signal.SIGTERM}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        if not final.exists():
            tmp.rename(final)
            return None
        if _exchange(tmp, final):
            return tmp
        aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.{OLD_TAG}", dir=final.parent))
        final.rename(aside)  # replaces the empty folder mkdtemp reserved
        tmp.rename(final)
        return aside
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
