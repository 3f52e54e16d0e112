"""The one base class of the errors this package raises on purpose.

Each stage keeps its own error class (``SheetError``, ``TrialError``, ``IngestError``, ...)
with its own other bases (``ValueError`` ...), so a caller that wants one kind catches that
kind; a caller that only wants "a problem we described" (the CLI, the workflow's start)
catches :class:`AntigenProfileError` instead of a tuple that falls behind when a stage adds a
class. Knows nothing else.
"""

from __future__ import annotations


class AntigenProfileError(Exception):
    """Every error of ours, with a one-line message naming the file, the sample and the fix.

    Anything else escaping the package (``KeyError``, ``MemoryError``) is a bug or the
    machine, not a problem with the user's inputs.
    """
