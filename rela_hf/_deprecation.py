"""Moved and renamed public names keep working for one release, with a ``FutureWarning``.

A module whose public names moved keeps a module-level ``__getattr__`` (PEP 562) built by
:func:`moved_names`: reading an old name warns, naming the new place, and returns the object that
lives there (the same object, so ``isinstance`` checks and identity keep working). A module that
is gone altogether comes back as a thin shim that calls :func:`warn_moved_module` on import and
forwards its names the same way. This is the pattern timm uses for ``timm.models.layers``.

``FutureWarning`` rather than ``DeprecationWarning``: Python shows it by default, so users of the
library (not only its test suites) see it. The names are kept for one release: deprecated in
:data:`DEPRECATED_IN`, removed in :data:`REMOVED_IN`; CHANGELOG.md lists them.

Examples:
    >>> __getattr__ = moved_names("old_module", {"PI": "math:pi"})
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     value = __getattr__("PI")
    >>> round(value, 2), caught[0].category.__name__
    (3.14, 'FutureWarning')
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["DEPRECATED_IN", "REMOVED_IN", "Moved", "moved_names", "resolve", "warn_moved_module"]

DEPRECATED_IN = "0.3.0"
REMOVED_IN = "0.4.0"


@dataclasses.dataclass(frozen=True)
class Moved:
    """Where an old name went, and what else changed.

    Attributes:
        target: The new place, ``"package.module:attribute"``; the attribute may be dotted
            (``"rela_hf.run_layout:RunLayout.HISTORY"``).
        note: What changed besides the place (behaviour, arguments, values), appended to the
            warning so that users know what to edit.
        value: For a name with no exact new equivalent: builds the value the old name gives
            (e.g. an old constant rebuilt from its replacement). ``None``: ``target`` itself.
    """

    target: str
    note: str = ""
    value: Callable[[], Any] | None = None

    @property
    def new_name(self) -> str:
        """The new place as users import it: ``package.module.attribute``."""
        module, _, attribute = self.target.partition(":")
        return f"{module}.{attribute}"


def resolve(target: str) -> Any:
    """The object at ``"package.module:attribute.path"`` (imports the module if needed)."""
    module_name, _, attribute = target.partition(":")
    if not attribute:
        raise ValueError(f"Moved-name target {target!r} must be 'package.module:attribute'.")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def _message(old: str, new: str, note: str) -> str:
    text = (
        f"{old} moved to {new} in rela-hf 0.2; import it from there. The old name is deprecated "
        f"since {DEPRECATED_IN} and will be removed in {REMOVED_IN} (see CHANGELOG.md)."
    )
    return f"{text} Note: {note}" if note else text


def moved_names(module_name: str, moved: Mapping[str, str | Moved]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that warns about, and forwards, the names in ``moved``.

    Args:
        module_name: The old module (pass ``__name__``), used in the warning.
        moved: Old name -> new place: a ``"module:attribute"`` string, or a :class:`Moved`
            with a note or a replacement value.

    Returns:
        The function to assign to the module's ``__getattr__``; any other name raises the
        usual ``AttributeError``.
    """
    entries = {name: e if isinstance(e, Moved) else Moved(e) for name, e in moved.items()}

    def __getattr__(name: str) -> Any:
        entry = entries.get(name)
        if entry is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        # stacklevel 2: the warning points at the user's line that read the old name
        message = _message(f"{module_name}.{name}", entry.new_name, entry.note)
        warnings.warn(message, FutureWarning, stacklevel=2)
        return entry.value() if entry.value is not None else resolve(entry.target)

    __getattr__.moved = entries  # type: ignore[attr-defined]  # the table, for tests and docs
    return __getattr__


def warn_moved_module(module_name: str, new_places: str) -> None:
    """Warn, at import time of a shim module, that ``module_name`` is gone and where to look.

    Args:
        module_name: The shim module (pass ``__name__``).
        new_places: Where its names live now, in words (``"rela_hf.methods.byol (the loss)..."``).
    """
    # stacklevel 3: past this helper and the shim's body to the user's import (warnings skips
    # importlib's own frames)
    warnings.warn(
        f"The module {module_name} is gone since rela-hf 0.2: its names moved to {new_places}. "
        f"Importing them from {module_name} still works until {REMOVED_IN}, with a warning.",
        FutureWarning,
        stacklevel=3,
    )
