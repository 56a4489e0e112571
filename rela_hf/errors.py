"""The errors a user can fix, and how the console commands report them.

Every error of rela-hf that comes from the user's input (an option value, a dataset's content, a
checkpoint or an output folder) derives from :class:`UserError`; its message says what was wrong,
where, and what to do. The console commands print such an error on one line and exit with status
2, without a traceback (:func:`run_command`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["ConfigError", "DataError", "UserError", "run_command"]


class UserError(Exception):
    """An error the user can fix; its message names the input and the remedy."""


class ConfigError(UserError, ValueError):
    """A bad option value or config file, reported before any compute is spent."""


class DataError(UserError, ValueError):
    """A dataset whose content cannot be trained on (unreadable images, bad targets, ...)."""


def run_command(main: Callable[[], Any], name: str) -> None:
    """Run a console command's ``main``; a :class:`UserError` ends it with one line on stderr."""
    try:
        main()
    except UserError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
