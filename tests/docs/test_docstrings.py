"""Every public name of every ``__all__`` has a docstring, and so does each public method
or property its classes define (fast; the site build checks the same while rendering)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pyrovae


def _namespaces() -> list[str]:
    names = ["pyrovae"]
    for info in pkgutil.walk_packages(pyrovae.__path__, "pyrovae."):
        if "__all__" in vars(importlib.import_module(info.name)):
            names.append(info.name)
    return names


def test_every_public_name_and_member_has_a_docstring() -> None:
    bare: list[str] = []
    for ns in _namespaces():
        mod = importlib.import_module(ns)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not inspect.getdoc(obj):
                bare.append(f"{ns}.{name}")
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    fn = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
                    if (inspect.isfunction(fn) or isinstance(fn, property)) \
                            and not inspect.getdoc(getattr(obj, attr)):
                        bare.append(f"{ns}.{name}.{attr}")
    assert "pyrovae" in _namespaces() and "pyrovae.posterior" in _namespaces()
    assert not bare, f"public names without a docstring: {sorted(set(bare))}"
