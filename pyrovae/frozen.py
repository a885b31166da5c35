"""Read-only views of validated values (a ``Spec``, a
``ModelSpec``): a value validated once must not change
behind its validation, so reading one gives a view that refuses every change in
one line instead of a copy that would take the change silently.

A view compares equal to the plain dict or list it shows; ``dict(view)``,
``copy.copy``/``copy.deepcopy`` and pickling give plain, mutable containers, and
``yaml.safe_dump``/``json.dumps`` write it as plain data.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NoReturn

import yaml

from pyrovae.errors import PyrovaeError

__all__ = ["FrozenDict", "FrozenList", "freeze", "thaw"]


def _refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    """Refused: a validated value is read-only (a PyrovaeError naming it)."""
    raise PyrovaeError(f"{getattr(self, '_what', 'spec')}: a validated spec is read-only; "
                       "change the raw spec and validate it again (or Spec.replace)")


class FrozenDict(dict):
    """A dict that refuses changes (see the module)."""

    __slots__ = ("_what",)
    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __copy__(self) -> dict[str, Any]:
        return thaw(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return thaw(self)

    def __reduce__(self) -> Any:
        return (dict, (thaw(self),))


class FrozenList(list):
    """A list that refuses changes (see the module)."""

    __slots__ = ("_what",)
    __setitem__ = __delitem__ = append = extend = insert = pop = remove = clear = _refuse
    sort = reverse = __iadd__ = __imul__ = _refuse

    def __copy__(self) -> list[Any]:
        return thaw(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return thaw(self)

    def __reduce__(self) -> Any:
        return (list, (thaw(self),))


def freeze(value: Any, what: str = "spec") -> Any:
    """A read-only view of ``value`` (dicts and lists nested, copied); ``what`` names it
    in the refusal (``spec.train``)."""
    if isinstance(value, Mapping):
        out: Any = FrozenDict()
        for k, v in value.items():
            dict.__setitem__(out, k, freeze(v, f"{what}.{k}"))
    elif isinstance(value, list):
        out = FrozenList()
        list.extend(out, (freeze(v, f"{what}[{i}]") for i, v in enumerate(value)))
    else:
        return copy.deepcopy(value)
    object.__setattr__(out, "_what", what)
    return out


def thaw(value: Any) -> Any:
    """Plain, mutable dicts and lists of a (possibly frozen) value, copied."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [thaw(v) for v in value]
    return copy.deepcopy(value)


yaml.SafeDumper.add_representer(FrozenDict, yaml.SafeDumper.represent_dict)
yaml.SafeDumper.add_representer(FrozenList, yaml.SafeDumper.represent_list)
