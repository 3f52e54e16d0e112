"""Where the workflow's own files live, so the CLI and the Snakefile read the same ones."""

from __future__ import annotations

from pathlib import Path

#: The repository root: the package is installed from it in editable mode (``pip install -e .``).
REPO_ROOT = Path(__file__).resolve().parents[2]


def repo_path(relative: str | Path) -> Path:
    """Return a path inside the repository, failing clearly when the package was not installed
    from a checkout (the workflow, its config and schemas are not part of a wheel)."""
    path = REPO_ROOT / relative
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: antigen-profile must be installed from its repository "
            "with `pip install -e .` so that config/, workflow/ and resources/ are available"
        )
    return path
