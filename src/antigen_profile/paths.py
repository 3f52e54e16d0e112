"""Where the workflow's own files live, so the CLI and the Snakefile read the same ones.

The files the package reads (the JSON schemas in ``workflow/schemas/``, the default
``config/config.yaml`` and the trials it names, the gating template in ``resources/gates/``)
have one copy, where the workflow keeps them. A wheel carries them as package data under
``antigen_profile/_repo/`` at the same relative paths (pyproject.toml maps those folders into
the package), so a path relative to the repository means the same file in a checkout and in
an installed wheel.
"""

from __future__ import annotations

from pathlib import Path

#: The copy of the repository's files inside an installed wheel (absent from a checkout).
SHIPPED_ROOT = Path(__file__).resolve().parent / "_repo"
#: The checkout this module sits in (``src/antigen_profile/``), when it is one.
CHECKOUT_ROOT = Path(__file__).resolve().parents[2]
#: Where repository-relative paths (``config/config.yaml``, ...) resolve: the checkout when
#: the package runs from one (``pip install -e .``), else the files the wheel ships.
REPO_ROOT = SHIPPED_ROOT if SHIPPED_ROOT.is_dir() else CHECKOUT_ROOT


def repo_path(relative: str | Path) -> Path:
    """Return a file of the repository (or its copy in the wheel), failing clearly when it is
    neither: only the files pyproject.toml maps into the package are shipped."""
    path = REPO_ROOT / relative
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: antigen-profile ships config/, workflow/schemas/ and "
            "resources/gates/ with the package; anything else (the workflow itself, the demo "
            "sheets) needs the repository: install it with `pip install -e .` from a checkout"
        )
    return path
