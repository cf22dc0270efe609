"""The one base class for errors a user can fix: a bad recipe, a bad input file, a missing artifact.

The command line catches `UserError` alone and prints its message as one line with its `exit_code`;
every other exception is a bug and keeps its traceback. A `UserError` message names what to fix (the
recipe key, the file and row, the artifact) and never holds a secret.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can act on; `exit_code` 2 for usage (recipe, arguments), 1 for a failed run."""

    exit_code = 1
