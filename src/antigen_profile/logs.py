"""Logging for jobs: each Snakemake job writes its own log file, tracebacks included."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("antigen_profile")


@contextmanager
def job_log(path: str | Path) -> Iterator[logging.Logger]:
    """Send the package's log records to ``path`` for the duration of one job; an exception
    is logged with its traceback (for the developer) and re-raised (so the job fails)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield log
    except Exception:
        log.exception("job failed")
        raise
    finally:
        log.removeHandler(handler)
        handler.close()
