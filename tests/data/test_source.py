"""Streamed data sources (LoaderSource, ArrayDataset) and data-file options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from pyrovae import VAE, PyrovaeError, fit, load_dataset
from pyrovae.data import ArrayDataset, LoaderSource, TensorSource, as_source
from pyrovae.runs import folder as runs
from pyrovae.runs import pipeline


class CountingDataset(Dataset):
    """A map-style data set that builds each example on demand and records the
    largest number of examples ever held at once (it never holds them all)."""

    def __init__(self, n: int, shape=(1, 4, 4), labels: bool = True) -> None:
        self.n, self.shape, self.labels = n, shape, labels
        self.fetched = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.fetched += 1
        g = torch.Generator().manual_seed(int(i))
        x = torch.bernoulli(torch.full(self.shape, 0.4), generator=g)
        return (x, torch.tensor(i % 10)) if self.labels else x

    def materialise(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*(self[i] for i in range(self.n)))
        return torch.stack(xs), torch.stack(ys)


def _same_batches(a, b) -> bool:
    a, b = list(a), list(b)
    return len(a) == len(b) and all(
        torch.equal(p.x, q.x) and ((p.y is None and q.y is None) or torch.equal(p.y, q.y))
        for p, q in zip(a, b)
    )


@pytest.mark.parametrize("wrap", ["dataset", "loader", "array"])
def test_streamed_batches_equal_the_in_memory_ones_for_a_seed(wrap, tmp_path):
    data = CountingDataset(70)
    x, y = data.materialise()
    if wrap == "array":
        np.save(tmp_path / "x.npy", x.numpy())
        src = as_source(ArrayDataset(np.load(tmp_path / "x.npy", mmap_mode="r"), y.numpy()))
    else:
        src = as_source(DataLoader(data, batch_size=999, shuffle=True) if wrap == "loader"
                        else data)
    assert isinstance(src, LoaderSource)
    mem = TensorSource(x, y)
    assert src.num_data == 70 and src.event_shape == (1, 4, 4) and src.has_context
    assert src.num_batches(16) == 5
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert _same_batches(src.batches(16, g1), mem.batches(16, g2))
    assert torch.equal(g1.get_state(), g2.get_state())  # the generator is consumed alike
    assert _same_batches(src.batches(16), mem.batches(16))
    assert torch.equal(src.head(3).x, x[:3])
    assert src.fingerprint() == mem.fingerprint()


def test_streamed_source_never_holds_more_than_a_batch():
    data = CountingDataset(50, labels=False)
    src = LoaderSource(data)
    data.fetched = 0
    sizes = [len(b) for b in src.batches(8, torch.Generator().manual_seed(0))]
    assert sizes == [8] * 6 + [2] and data.fetched == 50
    assert not src.has_context


def test_streamed_sources_that_cannot_work_are_refused():
    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(3)

    with pytest.raises(PyrovaeError, match="map-style"):
        as_source(Stream())
    with pytest.raises(PyrovaeError, match="empty"):
        as_source(TensorDataset(torch.zeros(0, 3)))
    with pytest.raises(PyrovaeError, match="carries its own context"):
        as_source(TensorDataset(torch.zeros(4, 3)), y=torch.zeros(4))


def test_fit_on_a_dataloader_equals_fit_in_memory_for_a_seed():
    data = CountingDataset(90, labels=False)
    x = torch.stack([data[i] for i in range(90)])
    runs_ = []
    for source in (x, DataLoader(data, batch_size=32)):
        torch.manual_seed(0)
        vae = VAE((1, 4, 4), 2, encoder=[8])
        data.fetched = 0
        fit(vae, source, epochs=2, batch_size=32, seed=3, progress=False, eval_every=None)
        runs_.append(vae.state_dict())
    a, b = runs_
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fit_refuses_a_dataloader_of_another_batch_size_naming_both():
    data = CountingDataset(40, labels=False)
    vae = VAE((1, 4, 4), 2, encoder=[8])
    with pytest.raises(PyrovaeError, match=r"DataLoader's batch_size is 16 but fit's batch_size "
                                           r"is 128"):
        fit(vae, DataLoader(data, batch_size=16), epochs=1, progress=False, eval_every=None)


# ------------------------------------------------------------ data files
def test_user_arrays_keep_their_shape(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((5, 3, 4)))
    np.save(tmp_path / "b.npy", np.zeros((5, 2, 3, 4)))
    assert load_dataset(str(tmp_path / "a.npy")).event_shape == (3, 4)
    assert load_dataset(str(tmp_path / "b.npy")).event_shape == (2, 3, 4)


def test_csv_header_row_can_be_skipped(tmp_path):
    (tmp_path / "h.csv").write_text("a,b,c\n1,0,1\n0,1,1\n")
    with pytest.raises(PyrovaeError, match=r"data\.header: true"):
        load_dataset(str(tmp_path / "h.csv"))
    ds = load_dataset(str(tmp_path / "h.csv"), header=True)
    assert ds.x.tolist() == [[1, 0, 1], [0, 1, 1]]
    spec, _, train, _ = pipeline.build({"data": {"name": str(tmp_path / "h.csv"), "header": True,
                                                 "test_fraction": 0.0}})
    assert spec["data"]["header"] is True and len(train) == 2


def test_npy_garbage_is_one_line_without_pickle_advice(tmp_path):
    (tmp_path / "g.npy").write_bytes(b"\x00garbage bytes, no header")
    with pytest.raises(PyrovaeError) as err:
        load_dataset(str(tmp_path / "g.npy"))
    msg = str(err.value)
    assert "\n" not in msg and "allow_pickle" not in msg and "cannot read data" in msg


def test_spec_records_the_resolved_transform_and_event_shape():
    spec, vae, train, _ = pipeline.build({"latent_dim": 2, "encoder": {"hidden": [4]},
                                          "data": {"name": "digits"}})
    assert spec["data"]["transform"] == "binarize" and train.transform == "binarize"
    assert spec["event_shape"] == [1, 8, 8] and spec["data_dim"] == 64
    assert vae.event_shape == (1, 8, 8)


def test_spec_event_shape_must_match_the_data():
    with pytest.raises(PyrovaeError, match=r"event_shape: spec says \[64\].*\[1, 8, 8\]"):
        pipeline.build({"event_shape": [64], "data": {"name": "digits"}})
    with pytest.raises(PyrovaeError, match=r"event_shape: .* holds 64 values, data_dim says 5"):
        pipeline.build({"event_shape": [1, 8, 8], "data_dim": 5})
    assert runs.SPEC_FILE  # the run-folder layer still imports
