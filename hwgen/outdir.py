"""Output folders that appear whole or not at all."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output_dir(out_root: Path, name: str) -> Iterator[Path]:
    """Yield a temporary folder next to out_root/name; on success it replaces that folder.

    A failed or interrupted build leaves the previous design untouched (never half written).
    """
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_root))
    try:
        yield tmp
        final = out_root / name
        if final.exists():
            shutil.rmtree(final)
        tmp.chmod(0o755)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
