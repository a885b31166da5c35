"""The one error type for user mistakes.

Every problem the user can fix (a bad spec, bad data, a missing file, a refused
checkpoint) is raised as :class:`PyrovaeError` with a message that names the
problem, e.g. ``prior.components: expected a positive integer, got 0``.  The CLI
prints the message on one line and exits with status 2.
"""

from __future__ import annotations


class PyrovaeError(ValueError):
    """A user-facing error whose message says what is wrong and where."""
