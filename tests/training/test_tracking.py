"""Tracking callbacks: CSV and JSON-lines logs equal to the history, TensorBoard event
files read back with TensorBoard's own reader, MLflow metrics read back with its client;
the learning rate, gradient norm and epoch time in every record."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pyrovae import VAE, fit
from pyrovae.training.tracking import (
    TRACKERS,
    CSVLogger,
    JSONLinesLogger,
    TensorBoardLogger,
    read_csv_log,
    scalars,
)


def _data(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, 10), 0.3), generator=g)


def _fit(callbacks, epochs=4, **kw):
    torch.manual_seed(0)
    vae = VAE(10, 2, encoder=[8])
    return fit(vae, _data(64, 0), test_data=_data(32, 1), epochs=epochs, batch_size=16,
               eval_every=2, progress=False, callbacks=callbacks, **kw)


def test_records_hold_lr_grad_norm_and_epoch_time():
    h = _fit([], epochs=2, lr=3e-3)
    for r in h.records:
        assert r["lr"] == 3e-3
        assert r["grad_norm"] > 0 and math.isfinite(r["grad_norm"])
        assert 0 < r["epoch_seconds"] <= r["seconds"]
    assert h.records[0]["grad_norm"] != h.records[1]["grad_norm"]


def test_stock_svi_records_the_lr_of_pyros_optimiser():
    h = _fit([], epochs=1, lr=2e-3, engine="pyro")
    assert h.records[0]["lr"] == 2e-3


def test_csv_and_jsonl_logs_equal_the_history(tmp_path):
    csv_log, jsonl = CSVLogger(tmp_path / "h.csv"), JSONLinesLogger(tmp_path / "h.jsonl")
    h = _fit([csv_log, jsonl])
    assert "test_elbo" not in h.records[0] and "test_elbo" in h.records[1]  # open record
    assert read_csv_log(tmp_path / "h.csv") == h.records
    lines = (tmp_path / "h.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == h.records


def test_a_log_is_rewritten_from_the_history_on_its_first_epoch(tmp_path):
    """A resumed run's log drops the rows a killed run wrote after its checkpoint."""
    (tmp_path / "h.csv").write_text("epoch\n1\n2\n3\n4\n5\n6\n")
    h = _fit([CSVLogger(tmp_path / "h.csv")], epochs=2)
    assert read_csv_log(tmp_path / "h.csv") == h.records


def test_tensorboard_scalars_and_figure_read_back_with_tensorboards_reader(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    h = _fit([TensorBoardLogger(tmp_path / "tb")])
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/elbo", "train/kl", "test/elbo", "optim/lr", "optim/kl_weight",
            "optim/grad_norm", "time/epoch_seconds"} <= tags
    for tag, key in (("train/elbo", "train_elbo"), ("test/elbo", "test_elbo"),
                     ("optim/lr", "lr"), ("optim/grad_norm", "grad_norm")):
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        want = [(r["epoch"], r[key]) for r in h.records if key in r]
        assert [s for s, _ in got] == [s for s, _ in want]
        assert all(v == pytest.approx(w, rel=1e-6) for (_, v), (_, w) in zip(got, want))
    assert "learning_curve" in acc.Tags()["images"]


def test_mlflow_metrics_read_back_with_its_client(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from pyrovae.training.tracking import MLflowLogger

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a local store for the test
    uri = (tmp_path / "mlruns").as_uri()
    logger = MLflowLogger(uri, run_name="t")
    h = _fit([logger])
    hist = MlflowClient(uri).get_metric_history(logger.run_id, "train/elbo")
    assert [(m.step, m.value) for m in hist] == [(r["epoch"], r["train_elbo"])
                                                 for r in h.records]


def test_scalars_name_every_numeric_term_of_an_open_record():
    rec = {"epoch": 3, "step": 9, "train_elbo": -1.0, "train_kl/z1": 0.5, "classify": 0.1,
           "test_elbo": -2.0, "kl_weight": 0.5, "lr": 1e-3, "kl_closed_form": True,
           "epoch_seconds": 0.1}
    assert scalars(rec) == {"train/elbo": -1.0, "train/kl/z1": 0.5, "other/classify": 0.1,
                            "test/elbo": -2.0, "optim/kl_weight": 0.5, "optim/lr": 1e-3,
                            "time/epoch_seconds": 0.1}


def test_trackers_are_registered_by_name():
    assert {"csv", "jsonl", "tensorboard", "mlflow"} <= set(TRACKERS.names())
