"""The per-epoch training history."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class History(Mapping):
    """Per-epoch records, readable as a mapping from a key to its column.

    Keys: ``epoch``, ``step``, ``train_loss`` (the training objective per example,
    negated: −ELBO_β / N, the running mean over the epoch's minibatches),
    ``kl_weight`` (β in force at the epoch's last step), ``train_elbo``,
    ``train_reconstruction`` and ``train_kl`` (per example, nats, at β = 1 whatever
    the schedule: the running means of the minibatch terms the training steps
    computed, as a hand-written loop logs them), ``kl_closed_form`` (whether the KL
    term was in closed form), ``test_elbo`` (the held-out ELBO, on evaluated epochs),
    ``lr`` (the learning rate in force, read from the optimiser), ``grad_norm`` (the
    L2 norm of the last step's gradient, after clipping; fast engine), ``epoch_seconds``
    (the epoch's wall time), ``seconds`` (training time so far), and ``train_<name>``
    for every further term the objective reports in its open record
    (:class:`~pyrovae.estimators.elbo.MinibatchLoss`, e.g. ``train_kl/z1`` or
    ``train_classify``).

    ``history["test_elbo"]`` is that column (``None`` on epochs without it);
    ``keys()``/``items()`` iterate the keys any record holds, in first-seen order.
    ``len(history)`` is the number of epochs (records), as before it was a mapping.
    Records never hold NaN: a non-finite value stops training (``DivergenceError``).
    """

    def __init__(self, records: list[dict[str, Any]] | None = None) -> None:
        self.records: list[dict[str, Any]] = [] if records is None else records

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return iter(seen)

    def __contains__(self, key: object) -> bool:
        return any(key in r for r in self.records)

    def __getitem__(self, key: str) -> list[Any]:
        if not isinstance(key, str):
            raise KeyError(key)
        return [r.get(key) for r in self.records]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self.records == other.records

    def __repr__(self) -> str:
        return f"History({len(self.records)} epochs, keys={list(self)})"

    @property
    def last(self) -> dict[str, Any]:
        """The last epoch's record (empty before the first epoch)."""
        return self.records[-1] if self.records else {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy: ``{"records": [one dict per epoch]}``."""
        return {"records": [dict(r) for r in self.records]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> History:
        """The History that :meth:`to_dict` wrote."""
        return cls([dict(r) for r in d.get("records", [])])
