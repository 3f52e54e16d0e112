"""Logging for jobs: each Snakemake job writes its own log file, tracebacks included."""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

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


def leave(code: int = 0) -> NoReturn:
    """End the process now, without the interpreter's teardown.

    Freeing every module and object a job loaded (scikit-learn, SciPy, matplotlib, pandas)
    costs a few tenths of a second at each exit, paid once per sample (issue 19). Only for the
    very end of a job or command, after every output is written and closed. ``atexit``
    handlers still run (logging's shutdown, temporary folders' clean-up), and the standard
    streams are flushed.
    """
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
