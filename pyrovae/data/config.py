"""The spec's ``data`` section, declared once: the fields of :class:`DataConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from pyrovae.registry import Param, Section, declared, params_of

__all__ = ["DATA_PARAMS", "DataConfig"]


@dataclass(frozen=True)
class DataConfig(Section):
    """Which data a run trains on and how it is split: each field's metadata is its
    :class:`~pyrovae.registry.Param`, from which the spec's ``data`` section, the docs'
    spec reference and ``pyrovae families`` are built (:data:`DATA_PARAMS`).
    Validated on creation (a PyrovaeError names ``data.KEY``)."""

    section = "data"

    name: str = declared(Param("str", "digits",
                               doc="digits, mnist5k, mnist (IDX folder) or a file path"))
    path: str | None = declared(Param("str", None, nullable=True,
                                      doc="folder or file for mnist / file data"))
    transform: str | None = declared(Param(
        "choice", None, nullable=True, choices=("binarize", "unit", "none"),
        doc="binarize (x/max > 0.5), unit (x/max), none; null = the data set's default"))
    header: bool = declared(Param("bool", False,
                                  doc="a .csv file's first row holds column names"))
    test_fraction: float = declared(Param("unit_float", 0.2, doc="held-out fraction"))
    split_seed: int = declared(Param("seed", 0, doc="seed of the train/test split"))


#: The ``data`` options as parameters, ``name -> Param``, read off :class:`DataConfig`.
DATA_PARAMS: dict[str, Param] = params_of(DataConfig)
