"""Experiment tracking: callbacks that log every epoch's record as training runs.

Each tracker is a ``fit`` callback, ``tracker(trainer, record)`` after every
checked epoch, with ``close(trainer)`` when training ends.  The record is the
history's open record: every term the objective reports (``train_elbo``,
``train_kl``, ``test_elbo``, …, whatever other objectives add), ``kl_weight`` (β),
``lr`` (read from the optimiser), ``grad_norm``, ``epoch_seconds`` and
``seconds``.  Trackers are registered by name (:data:`TRACKERS`) and declared in
a spec as ``track: [csv, tensorboard]``; in Python pass them to ``fit``::

    fit(vae, x, test_data=xt, callbacks=[CSVLogger("log.csv"), TensorBoardLogger("tb")])

* ``csv`` (:class:`CSVLogger`) and ``jsonl`` (:class:`JSONLinesLogger`): one row /
  line per epoch, appended and flushed as the epoch ends; no extra dependency.  The
  file always equals the history: on its first epoch in a process (a new run or a
  resumed one) it is rewritten from the trainer's history, so rows of epochs a
  killed run did after its last checkpoint never stay.  A CSV cell holds the JSON
  text of the value (numbers in full precision, ``true``/``false``); an empty cell:
  the epoch has no such key.
* ``tensorboard`` (:class:`TensorBoardLogger`, ``pip install pyrovae[tensorboard]``):
  scalars under ``train/``, ``test/``, ``optim/`` and ``time/``, and the learning
  curve as a figure at the end; a resumed run purges the steps after its checkpoint.
* ``mlflow`` (:class:`MLflowLogger`, ``pip install pyrovae[mlflow]``, the
  ``mlflow-skinny`` client): metrics per epoch (step = epoch) to the tracking server
  MLflow is configured with (``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pyrovae import io as pio
from pyrovae.errors import PyrovaeError
from pyrovae.registry import Registry

#: name -> tracker class (``track: [csv, tensorboard]`` in a spec).
TRACKERS = Registry("tracker")

#: The scalars a record holds that are not numbers to plot.
_NOT_SCALARS = frozenset({"epoch", "step", "kl_closed_form"})


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The record's numbers to plot, named ``group/key``: ``train/elbo``, ``test/elbo``,
    ``optim/lr``, ``optim/kl_weight``, ``optim/grad_norm``, ``time/epoch_seconds``."""
    out: dict[str, float] = {}
    for k, v in record.items():
        if k in _NOT_SCALARS or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v):
            continue
        if k.startswith(("train_", "test_")):
            group, _, name = k.partition("_")
        elif k in ("lr", "kl_weight", "grad_norm"):
            group, name = "optim", k
        elif k.endswith("seconds"):
            group, name = "time", k
        else:
            group, name = "other", k
        out[f"{group}/{name}"] = float(v)
    return out


class _FileLogger:
    """A log file that equals the history: rewritten from it on the first epoch of each
    process, then appended one epoch at a time."""

    params: ClassVar[dict[str, Any]] = {}
    file_name = ""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: Any = None

    @classmethod
    def in_folder(cls, folder: str | Path, run_name: str = "") -> _FileLogger:
        """The tracker writing its file in a run folder."""
        return cls(Path(folder) / cls.file_name)

    def _text(self, records: list[Mapping[str, Any]]) -> str:
        raise NotImplementedError

    def _line(self, record: Mapping[str, Any]) -> str | None:
        """One record's line, or None when the file must be rewritten (a new column)."""
        raise NotImplementedError

    def __call__(self, trainer: Any, record: Mapping[str, Any]) -> None:
        line = None if self._file is None else self._line(record)
        if line is None:
            self._rewrite(trainer.history.records)
        else:
            self._file.write(line)
            self._file.flush()

    def _rewrite(self, records: list[Mapping[str, Any]]) -> None:
        if self._file is not None:
            self._file.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        pio.atomic_write_text(self.path, self._text(records))
        self._file = open(self.path, "a", encoding="utf-8", newline="")

    def close(self, trainer: Any = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _cell(value: Any) -> str:
    return json.dumps(value)


@TRACKERS.register("csv")
class CSVLogger(_FileLogger):
    """The history as a CSV file, one row per epoch, written as training runs.

    Args:
        path: the file (``history.csv`` in a run folder).
    """

    file_name = "history.csv"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.columns: list[str] = []

    def _text(self, records: list[Mapping[str, Any]]) -> str:
        self.columns = list(dict.fromkeys(k for r in records for k in r))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        for r in records:
            w.writerow([_cell(r[k]) if k in r else "" for k in self.columns])
        return buf.getvalue()

    def _line(self, record: Mapping[str, Any]) -> str | None:
        if any(k not in self.columns for k in record):
            return None
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [_cell(record[k]) if k in record else "" for k in self.columns])
        return buf.getvalue()


def read_csv_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a :class:`CSVLogger` file (empty cells: keys the epoch lacks)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return []
    head = rows[0]
    return [{k: json.loads(c) for k, c in zip(head, row, strict=True) if c != ""}
            for row in rows[1:]]


@TRACKERS.register("jsonl")
class JSONLinesLogger(_FileLogger):
    """The history as JSON lines, one record per epoch, written as training runs.

    Args:
        path: the file (``history.jsonl`` in a run folder).
    """

    file_name = "history.jsonl"

    def _text(self, records: list[Mapping[str, Any]]) -> str:
        return "".join(json.dumps(dict(r), allow_nan=False) + "\n" for r in records)

    def _line(self, record: Mapping[str, Any]) -> str | None:
        return json.dumps(dict(record), allow_nan=False) + "\n"


@TRACKERS.register("tensorboard")
class TensorBoardLogger:
    """TensorBoard scalars of every record (and the learning curve as a figure at the
    end), through ``torch.utils.tensorboard``.

    Args:
        log_dir: the event files' folder (``tensorboard/`` in a run folder).

    Raises:
        PyrovaeError: the ``tensorboard`` package is not installed (``pip install
            pyrovae[tensorboard]``).
    """

    params: ClassVar[dict[str, Any]] = {}
    file_name = "tensorboard"

    def __init__(self, log_dir: str | Path) -> None:
        self.require()
        self.log_dir = Path(log_dir)
        self._writer: Any = None

    @staticmethod
    def require() -> None:
        """A PyrovaeError unless the ``tensorboard`` package is installed."""
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise PyrovaeError("track: tensorboard is not installed; pip install "
                               "'pyrovae[tensorboard]' (or remove it from track)") from None

    @classmethod
    def in_folder(cls, folder: str | Path, run_name: str = "") -> TensorBoardLogger:
        return cls(Path(folder) / cls.file_name)

    def __call__(self, trainer: Any, record: Mapping[str, Any]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # a resumed run: drop the steps a killed run logged after its checkpoint
            resumed = len(trainer.history) > 1
            self._writer = SummaryWriter(str(self.log_dir),
                                         purge_step=int(record["epoch"]) if resumed else None)
        step = int(record["epoch"])
        for name, value in scalars(record).items():
            self._writer.add_scalar(name, value, step)

    def log_numbers(self, values: Mapping[str, float], prefix: str, step: int = 0) -> None:
        """Extra scalars (the check report's numbers) under ``prefix/``, at ``step``."""
        from torch.utils.tensorboard import SummaryWriter

        writer = self._writer or SummaryWriter(str(self.log_dir))
        for name, value in values.items():
            writer.add_scalar(f"{prefix}/{name}", float(value), step)
        writer.flush()
        if self._writer is None:
            writer.close()

    def close(self, trainer: Any = None) -> None:
        if self._writer is None:
            return
        if trainer is not None and len(trainer.history):
            from pyrovae.plots.training import learning_curve

            with contextlib.suppress(Exception):  # a figure is a nicety, never a failure
                self._writer.add_figure("learning_curve", learning_curve(trainer.history),
                                        int(trainer.history.last["epoch"]))
        self._writer.close()
        self._writer = None


@TRACKERS.register("mlflow")
class MLflowLogger:
    """MLflow metrics of every record (step = epoch), logged to the tracking server or
    store MLflow is configured with (``MLFLOW_TRACKING_URI``), or to ``tracking_uri``.

    Args:
        tracking_uri: where to log (``None``: MLflow's own configuration).
        experiment: the MLflow experiment (created if absent).
        run_name: the MLflow run's name (a run folder's name, from ``pyrovae train``).

    Raises:
        PyrovaeError: ``mlflow`` is not installed (``pip install pyrovae[mlflow]``).
    """

    params: ClassVar[dict[str, Any]] = {}

    def __init__(self, tracking_uri: str | None = None, experiment: str = "pyrovae",
                 run_name: str = "pyrovae") -> None:
        self.require()
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self._client: Any = None
        self.run_id: str | None = None

    @staticmethod
    def require() -> None:
        """A PyrovaeError unless the ``mlflow`` package is installed."""
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise PyrovaeError("track: mlflow is not installed; pip install 'pyrovae[mlflow]' "
                               "(or remove it from track)") from None

    @classmethod
    def in_folder(cls, folder: str | Path, run_name: str = "") -> MLflowLogger:
        return cls(run_name=run_name or Path(folder).name)

    def _start(self) -> None:
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        exp = self._client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp else self._client.create_experiment(self.experiment)
        self.run_id = self._client.create_run(exp_id, run_name=self.run_name).info.run_id

    def __call__(self, trainer: Any, record: Mapping[str, Any]) -> None:
        if self._client is None:
            self._start()
        step = int(record["epoch"])
        for name, value in scalars(record).items():
            self._client.log_metric(self.run_id, name, value, step=step)

    def log_numbers(self, values: Mapping[str, float], prefix: str, step: int = 0) -> None:
        """Extra metrics (the check report's numbers) under ``prefix/``, in a run of
        their own (``RUN check``)."""
        name = self.run_name
        self.run_name = f"{name} {prefix}"
        try:
            self._start()
            for key, value in values.items():
                self._client.log_metric(self.run_id, f"{prefix}/{key}", float(value), step=step)
            self.close()
        finally:
            self.run_name = name

    def close(self, trainer: Any = None) -> None:
        if self._client is not None:
            self._client.set_terminated(self.run_id)
            self._client = None


#: Report entries that are settings, not results (never logged).
_NOT_REPORTED = frozenset({"figures", "data", "settings", "seed", "run", "split"})


def report_numbers(report: Mapping[str, Any], limit: int = 200) -> dict[str, float]:
    """The finite numbers of a check report, flattened (``amortization/gap``); a list of
    numbers gives its mean (``khat/mean``) and maximum (``khat/max``)."""
    out: dict[str, float] = {}

    def walk(v: Any, name: str, depth: int) -> None:
        if len(out) >= limit or depth > 3:
            return
        if isinstance(v, bool) or v is None:
            return
        if isinstance(v, (int, float)):
            if math.isfinite(v):
                out[name] = float(v)
        elif isinstance(v, Mapping):
            for k, x in v.items():
                if k not in _NOT_REPORTED:
                    walk(x, f"{name}/{k}" if name else str(k), depth + 1)
        elif isinstance(v, (list, tuple)) and v and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            finite = [float(x) for x in v if math.isfinite(x)]
            if finite:
                out[f"{name}/mean"] = sum(finite) / len(finite)
                out[f"{name}/max"] = max(finite)

    walk(report, "", 0)
    return out


def log_report(names: list[str], folder: str | Path, run_name: str,
               report: Mapping[str, Any], step: int) -> list[str]:
    """Log a check report's numbers (:func:`report_numbers`) to the run's trackers that
    take them (TensorBoard, MLflow) under ``check/``; returns the trackers used."""
    numbers = report_numbers(report)
    used = []
    for tracker in trackers_for(names, folder, run_name):
        log = getattr(tracker, "log_numbers", None)
        if callable(log):
            log(numbers, "check", step)
            used.append(type(tracker).__name__)
    return used


def require_trackers(names: list[str]) -> None:
    """A PyrovaeError naming the first tracker whose package is not installed (checked
    before a run writes anything)."""
    for name in names:
        require = getattr(TRACKERS.get(name), "require", None)
        if callable(require):
            require()


def trackers_for(names: list[str], folder: str | Path, run_name: str) -> list[Any]:
    """The trackers a spec's ``track`` names, writing into run folder ``folder`` (a run
    named ``run_name``, the folder's name once in place)."""
    return [TRACKERS.get(name).in_folder(folder, run_name) for name in names]
