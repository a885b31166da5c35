"""spec → data → VAE → fit → run folder, and back: the steps behind the CLI.

Each function takes plain values and returns plain results; the CLI only parses
arguments and formats what these return.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyro
import torch

from pyrovae import runs
from pyrovae.data import Dataset, load_dataset, train_test_split
from pyrovae.evaluate import evaluate, summary
from pyrovae.plots import save_figure
from pyrovae.plots import training as tplots
from pyrovae.spec import dump_spec, normalize_spec
from pyrovae.train import Trainer
from pyrovae.vae import VAE


def load_data(spec: dict[str, Any]) -> tuple[Dataset, Dataset, Dataset | None]:
    """``(full, train, test)`` as the spec's ``data`` section describes (seeded split)."""
    d = spec["data"]
    full = load_dataset(d["name"], path=d["path"], transform=d["transform"])
    train, test = train_test_split(full, d["test_fraction"], d["split_seed"])
    return full, train, test


def fingerprint(x: torch.Tensor) -> str:
    """SHA-256 of the data's shape and float32 bytes (identifies a data set)."""
    h = hashlib.sha256(str(tuple(x.shape)).encode())
    h.update(x.detach().cpu().contiguous().to(torch.float32).numpy().tobytes())
    return h.hexdigest()


def build(spec_raw: dict[str, Any] | None) -> tuple[dict[str, Any], VAE, Dataset, Dataset | None]:
    """Validate the spec, load the data, check it against the likelihood, build the VAE.

    Nothing is written; every user error is raised here, before training.
    """
    spec = normalize_spec(spec_raw)
    _, train, test = load_data(spec)
    if spec["data_dim"] is None:
        spec["data_dim"] = train.data_dim
    elif spec["data_dim"] != train.data_dim:
        from pyrovae.errors import PyrovaeError

        raise PyrovaeError(
            f"data_dim: spec says {spec['data_dim']}, data {spec['data']['name']!r} "
            f"has {train.data_dim}"
        )
    pyro.set_rng_seed(spec["train"]["seed"])
    vae = VAE.from_spec(spec)
    vae.likelihood.check_data(train.x, f"data {spec['data']['name']!r}")
    return spec, vae, train, test


def trainer_for(spec: dict[str, Any], vae: VAE, train: Dataset, test: Dataset | None,
                *, progress: bool = True, callbacks=()) -> Trainer:
    t = spec["train"]
    return Trainer(
        vae, train.x, epochs=t["epochs"], batch_size=t["batch_size"], lr=t["lr"],
        seed=t["seed"], test_data=None if test is None else test.x,
        objective=spec["objective"], kl_weight=spec["kl_weight"], engine=t["engine"],
        clip_norm=t["clip_norm"], eval_every=t["eval_every"], progress=progress,
        device=t["device"], callbacks=callbacks,
    )


def checkpoint_state(trainer: Trainer, spec: dict[str, Any], data_fingerprint: str) -> dict:
    state = trainer.state_dict()
    state["spec"] = spec
    state["data_fingerprint"] = data_fingerprint
    return state


def train_run(
    spec_raw: dict[str, Any] | None,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the model a spec describes and write the run folder ``out``.

    Returns the final metrics (also in ``out/metrics.json``).
    """
    spec, vae, train, test = build(spec_raw)
    out = runs.prepare_run_folder(out, overwrite=overwrite)
    dump_spec(spec, out / runs.SPEC_FILE)
    fp = fingerprint(train.x)
    every = spec["train"]["checkpoint_every"]

    def save(trainer: Trainer, record: dict[str, Any]) -> None:
        runs.atomic_write_json(out / runs.HISTORY_FILE, trainer.history.to_dict())
        if record["epoch"] % every == 0 or record["epoch"] == trainer.epochs:
            runs.save_checkpoint(out / runs.CHECKPOINT_FILE, checkpoint_state(trainer, spec, fp))

    trainer = trainer_for(spec, vae, train, test, progress=progress, callbacks=[save])
    history = trainer.run()
    metrics = finish_run(out, spec, vae, history, train, test)
    return metrics


def finish_run(out: Path, spec: dict[str, Any], vae: VAE, history: Any,
               train: Dataset, test: Dataset | None) -> dict[str, Any]:
    """Evaluate on train and test with the spec's K, write metrics and figures."""
    vae.cpu()
    k = spec["eval"]["num_samples"]
    metrics: dict[str, Any] = {
        "epochs": history.last.get("epoch"),
        "seconds": history.last.get("seconds"),
        "train": summary(evaluate(vae, train.x, num_samples=k)),
    }
    if test is not None:
        metrics["test"] = summary(evaluate(vae, test.x, num_samples=k))
    runs.atomic_write_json(out / runs.METRICS_FILE, metrics)
    write_figures(out / runs.FIGURES_DIR, vae, history, train, test)
    return metrics


def write_figures(folder: Path, vae: VAE, history: Any, train: Dataset,
                  test: Dataset | None) -> list[Path]:
    shown = test if test is not None else train
    paths = [save_figure(tplots.learning_curve(history), folder / "learning_curve.png")]
    torch.manual_seed(0)
    with torch.no_grad():
        z_mean = _latent_means(vae, shown.x)
    paths.append(save_figure(tplots.latent_map(z_mean, shown.y), folder / "latent_map.png"))
    if shown.image_shape is not None:
        x = shown.x[:20]
        paths.append(save_figure(
            tplots.reconstructions(x, vae.reconstruct(x), shown.image_shape),
            folder / "reconstructions.png",
        ))
        paths.append(save_figure(
            tplots.samples(vae.sample(100), shown.image_shape), folder / "samples.png"
        ))
    return paths


def _latent_means(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    from pyrovae.vae import _dist_mean

    return _dist_mean(vae.encode(x))


def evaluate_run(path: str | Path, *, num_samples: int | None = None,
                 split: str = "test") -> dict[str, Any]:
    """Re-evaluate a run folder on its own data split (rebuilt from the spec)."""
    vae, spec, _ = runs.load_run(path)
    _, train, test = load_data(spec)
    data = train if split == "train" or test is None else test
    k = num_samples or spec["eval"]["num_samples"]
    return {"split": "train" if data is train else "test",
            **summary(evaluate(vae, data.x, num_samples=k))}
