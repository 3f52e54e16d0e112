"""Atomic writers: a crash or a killed job never leaves a half-written output behind."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | Path, write: Callable[[IO[Any]], object], mode: str = "w") -> Path:
    """Write through a temporary file in the target folder, then rename it into place: a
    reader (or a crash) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        kwargs = {"encoding": "utf-8", "newline": ""} if "b" not in mode else {}
        with os.fdopen(fd, mode, **kwargs) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are shared with reviewers
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda h: h.write(text))


def write_json(path: str | Path, data: Any) -> Path:
    """JSON with sorted keys and no NaN (``allow_nan=False``): other programs must parse it."""
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False)
    return write_text(path, text + "\n")


def write_tsv(path: str | Path, table: pd.DataFrame) -> Path:
    """Tab-separated, no index, empty cells for missing values, ``\\n`` line ends."""
    return atomic_write(path, lambda h: table.to_csv(h, sep="\t", index=False, lineterminator="\n"))


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    return atomic_write(path, lambda h: np.savez_compressed(h, **arrays), mode="wb")
