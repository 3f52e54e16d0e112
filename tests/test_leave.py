"""``logs.leave``: a job's process ends without the interpreter's teardown (issue 19), yet
with its exit code, its ``atexit`` handlers run and what it printed delivered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import atexit, logging, sys
from antigen_profile.logs import job_log, leave
atexit.register(lambda: open(sys.argv[2], "w").write("atexit ran"))
with job_log(sys.argv[1]) as log:
    log.info("written before leaving")
print("to a pipe, so block-buffered")
leave(int(sys.argv[3]))
print("never reached")
"""


def test_leave_keeps_the_exit_code_the_output_and_the_atexit_handlers(tmp_path: Path) -> None:
    log, marker = tmp_path / "job.log", tmp_path / "atexit.txt"
    for code in (0, 3):
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(log), str(marker), str(code)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == code, done.stderr
        assert done.stdout == "to a pipe, so block-buffered\n"
        assert marker.read_text() == "atexit ran"
        assert "written before leaving" in log.read_text()
        marker.unlink()
