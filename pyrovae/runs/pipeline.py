"""spec → data → VAE → fit → run folder, and back: the steps behind the CLI.

Each function takes plain values and returns plain results; the CLI only parses
arguments and formats what these return.
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyro
import torch

from pyrovae import io as pio
from pyrovae.runs import folder as runs
from pyrovae.data import Dataset, TensorSource, load_dataset, train_test_split
from pyrovae.errors import PyrovaeError
from pyrovae.estimators.evaluate import evaluate, summary
from pyrovae.plots import save_figure
from pyrovae.plots import training as tplots
from pyrovae.runs.spec import dump_spec, normalize_spec
from pyrovae.training.trainer import STATE_KEYS, DivergenceError, Trainer, parse_device
from pyrovae.model.vae import VAE


def load_data(spec: dict[str, Any]) -> tuple[Dataset, Dataset, Dataset | None]:
    """``(full, train, test)`` as the spec's ``data`` section describes (seeded split)."""
    d = spec["data"]
    full = load_dataset(d["name"], path=d["path"], transform=d["transform"], header=d["header"])
    train, test = train_test_split(full, d["test_fraction"], d["split_seed"])
    return full, train, test


def fingerprint(x: torch.Tensor) -> str:
    """SHA-256 of the data's (flattened) shape and float32 bytes (identifies a data set;
    the same for image-shaped and flat copies, as in run folders written before event
    shapes were kept)."""
    return TensorSource(x.reshape(len(x), -1)).fingerprint()


def default_likelihood(x: torch.Tensor) -> str:
    """The likelihood a spec gets when it names none: ``bernoulli`` for binary data,
    else ``gaussian`` with a learned σ (never a Bernoulli on non-binary values)."""
    return "bernoulli" if bool(((x == 0) | (x == 1)).all()) else "gaussian"


def build(spec_raw: dict[str, Any] | None) -> tuple[dict[str, Any], VAE, Dataset, Dataset | None]:
    """Validate the spec, load the data, check it against the likelihood, build the VAE.

    Nothing is written; every user error is raised here, before training.
    """
    spec = normalize_spec(spec_raw)
    check_train_section(spec)
    _, train, test = load_data(spec)
    if not (spec_raw or {}).get("likelihood"):
        spec["likelihood"] = normalize_spec({"likelihood": default_likelihood(train.x)})[
            "likelihood"
        ]
    if spec["data_dim"] is None:
        spec["data_dim"] = train.data_dim
    elif spec["data_dim"] != train.data_dim:
        raise PyrovaeError(
            f"data_dim: spec says {spec['data_dim']}, data {spec['data']['name']!r} "
            f"has {train.data_dim}"
        )
    if spec["event_shape"] is None:  # the data's own shape (an MLP flattens it)
        spec["event_shape"] = list(train.event_shape)
    elif tuple(spec["event_shape"]) != train.event_shape:
        raise PyrovaeError(
            f"event_shape: spec says {spec['event_shape']}, data {spec['data']['name']!r} "
            f"has examples of shape {list(train.event_shape)}"
        )
    if spec["data"]["transform"] is None:
        spec["data"]["transform"] = train.transform  # record the default it resolved to
    pyro.set_rng_seed(spec["train"]["seed"])
    vae = VAE.from_spec(spec)
    vae.likelihood.check_data(train.x, f"data {spec['data']['name']!r}")
    return spec, vae, train, test


def check_train_section(spec: dict[str, Any]) -> None:
    """Checks of ``train`` beyond the spec's types: the seed's range, the device exists."""
    t = spec["train"]
    if t["seed"] > 2**32 - 1:
        raise PyrovaeError(f"train.seed: expected an integer in [0, 4294967295], got {t['seed']}")
    try:
        parse_device(t["device"])
    except PyrovaeError as exc:
        raise PyrovaeError(f"train.{exc}") from None


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


def checkpoint_state(trainer: Trainer, spec: dict[str, Any], data_fingerprint: str,
                     data_shape: tuple[int, ...] | None = None) -> dict:
    """The trainer's state plus what identifies the run: its spec and data fingerprint."""
    state = trainer.state_dict()
    state["spec"] = copy.deepcopy(spec)
    state["data_fingerprint"] = data_fingerprint
    if data_shape is not None:
        state["data_shape"] = list(data_shape)
    return state


def train_run(
    spec_raw: dict[str, Any] | None,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the model a spec describes and write the run folder ``out``.

    Everything is validated (spec, data, likelihood support, device) before
    anything is written; an existing run folder is replaced only with
    ``overwrite=True``.  Returns the final metrics (also in ``out/metrics.json``).
    """
    spec, vae, train, test = build(spec_raw)
    fp = fingerprint(train.x)
    trainer = trainer_for(spec, vae, train, test, progress=progress)
    out = runs.prepare_run_folder(out, overwrite=overwrite)
    dump_spec(spec, out / runs.SPEC_FILE)
    return _train_and_finish(out, spec, vae, trainer, train, test, fp)


def resume_run(
    path: str | Path,
    spec_raw: dict[str, Any] | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Continue the run in folder ``path`` from its last checkpoint and finish it.

    ``spec_raw=None`` resumes with the run's own spec.  A given spec must equal
    the run's except for ``train.epochs`` (e.g. raised, to train longer; never
    below the epochs done); the
    training data must have the fingerprint saved with the checkpoint.  The
    continued run ends with bitwise the same parameters as an uninterrupted one
    (same machine and thread count).  A finished run is just evaluated again.
    Returns the final metrics.
    """
    path = Path(path)
    if not path.is_dir():
        raise PyrovaeError(f"run folder not found: {path}")
    if not (path / runs.SPEC_FILE).is_file():
        raise PyrovaeError(f"{path} is not a pyrovae run folder (no {runs.SPEC_FILE})")
    ckpt = path / runs.CHECKPOINT_FILE
    if not ckpt.is_file():
        raise PyrovaeError(
            f"{path}: no checkpoint to resume from ({runs.CHECKPOINT_FILE} missing); "
            "start again with --overwrite"
        )
    state = pio.load_checkpoint(ckpt)
    missing = [k for k in (*STATE_KEYS, "spec", "data_fingerprint") if k not in state]
    if missing:
        raise PyrovaeError(f"{ckpt}: cannot resume from it (missing {', '.join(missing)})")
    try:
        saved = normalize_spec(state["spec"])
    except PyrovaeError as exc:
        raise PyrovaeError(f"{ckpt}: its spec is not valid any more ({exc})") from None
    on_disk = runs.read_spec(path / runs.SPEC_FILE)
    edited = spec_diff(saved, on_disk, ignore=("train.epochs",), names=("checkpoint", "spec.yaml"))
    if edited:
        raise PyrovaeError(
            f"{path / runs.SPEC_FILE} no longer matches the checkpoint's spec ({edited}); "
            "restore it, or start again with --overwrite"
        )
    # spec.yaml is rewritten when a resume raises train.epochs, before the next
    # checkpoint: the larger number is the latest intent.
    saved["train"]["epochs"] = max(saved["train"]["epochs"], on_disk["train"]["epochs"])

    if spec_raw is not None:  # a first comparison before the data are loaded
        given = normalize_spec(spec_raw)
        inferred = ["train.epochs"]
        if given["data_dim"] is None:
            inferred.append("data_dim")
        if given["event_shape"] is None:
            inferred.append("event_shape")
        if given["data"]["transform"] is None:
            inferred.append("data.transform")
        if not spec_raw.get("likelihood"):
            inferred.append("likelihood")  # build() picks it from the data
        changed = spec_diff(saved, given, ignore=tuple(inferred))
        if changed:
            raise PyrovaeError(
                f"cannot resume {path} with a different spec: {changed} (only train.epochs "
                "may change when resuming)"
            )
    spec, vae, train, test = build(saved if spec_raw is None else spec_raw)
    # keys inferred from the data that a run folder written before they were recorded lacks
    unrecorded = tuple(k for k, v in (("event_shape", saved["event_shape"]),
                                      ("data.transform", saved["data"]["transform"])) if v is None)
    changed = spec_diff(saved, spec, ignore=("train.epochs", *unrecorded))
    if changed:
        raise PyrovaeError(
            f"cannot resume {path} with a different spec: {changed} (only train.epochs may "
            "change when resuming)"
        )
    done = state["epoch"]
    if isinstance(done, bool) or not isinstance(done, int) or done < 0:
        raise PyrovaeError(f"{ckpt}: cannot resume from it (bad epoch {done!r})")
    if spec["train"]["epochs"] < done:
        raise PyrovaeError(
            f"train.epochs: {spec['train']['epochs']} is fewer than the {done} epochs "
            f"{path} has already trained"
        )
    fp = fingerprint(train.x)
    if fp != state["data_fingerprint"]:
        was = state.get("data_shape")
        was = f"shape {tuple(was)}, " if isinstance(was, list) else ""
        raise PyrovaeError(
            f"cannot resume {path} with different data: data.name "
            f"{spec['data']['name']!r} now gives training data of shape "
            f"{tuple(train.x.shape)}, fingerprint {fp[:12]}; the run was trained on "
            f"{was}fingerprint {str(state['data_fingerprint'])[:12]}"
        )
    trainer = trainer_for(spec, vae, train, test, progress=progress)
    trainer.load_state_dict(state)
    threads = state.get("num_threads")
    if isinstance(threads, int) and threads != torch.get_num_threads():
        warnings.warn(
            f"resuming {path} with {torch.get_num_threads()} threads; it ran with {threads}: "
            "the result may differ in the last bits from an uninterrupted run",
            stacklevel=2,
        )
    if spec["train"]["epochs"] != on_disk["train"]["epochs"]:
        dump_spec(spec, path / runs.SPEC_FILE)
    return _train_and_finish(path, spec, vae, trainer, train, test, fp)


def _train_and_finish(out: Path, spec: dict[str, Any], vae: VAE, trainer: Trainer,
                      train: Dataset, test: Dataset | None, fp: str) -> dict[str, Any]:
    """Train with history every epoch and checkpoints every ``checkpoint_every`` epochs
    and at the end (all atomic), then evaluate and write metrics and figures."""
    every = spec["train"]["checkpoint_every"]
    ckpt = out / runs.CHECKPOINT_FILE
    shape = tuple(train.x.shape)

    def save_state() -> None:
        pio.save_checkpoint(ckpt, checkpoint_state(trainer, spec, fp, shape))

    def save(trainer: Trainer, record: dict[str, Any]) -> None:
        pio.atomic_write_json(out / runs.HISTORY_FILE, trainer.history.to_dict())
        if record["epoch"] % every == 0 or record["epoch"] == trainer.epochs:
            save_state()

    if trainer.epoch == 0:
        save_state()  # a run killed before its first periodic checkpoint can resume too
    trainer.callbacks.append(save)
    try:
        history = trainer.run()
    except DivergenceError as exc:
        # The trainer holds the last good state (checked finite): keep it.
        save_state()
        pio.atomic_write_json(out / runs.HISTORY_FILE, trainer.history.to_dict())
        lr = spec["train"]["lr"]
        raise DivergenceError(
            f"training diverged: {exc.detail}; the last good state (end of epoch "
            f"{exc.good_epoch}) is kept in {ckpt}; try a smaller train.lr (now {lr:g}), "
            "train.clip_norm (e.g. 10), a KL warm-up (kl_weight: linear) or rescaled data",
            epoch=exc.epoch, step=exc.step, what=exc.what, good_epoch=exc.good_epoch,
            detail=exc.detail,
        ) from None
    return finish_run(out, spec, vae, history, train, test)


def spec_diff(a: Mapping[str, Any], b: Mapping[str, Any], *, ignore: tuple[str, ...] = (),
              names: tuple[str, str] = ("run has", "given"), limit: int = 6) -> str:
    """The keys where two specs differ, ``"train.lr: run has 0.001, given 0.01; ..."``
    (empty when they agree); ``ignore`` names keys or whole sections to skip."""
    fa, fb = _flatten(a), _flatten(b)
    missing = object()
    # a changed family makes its parameters differ too: name the family only
    families = [k[: -len(".family")] for k in fa
                if k.endswith(".family") and fa[k] != fb.get(k, missing)]
    keys = [k for k in dict.fromkeys([*fa, *fb])
            if not any(k == i or k.startswith(f"{i}.") for i in ignore)
            and not any(k.startswith(f"{f}.") and k != f"{f}.family" for f in families)]
    diffs = []
    for k in keys:
        va, vb = fa.get(k, missing), fb.get(k, missing)
        if va != vb or (type(va) is not type(vb) and not _same_number(va, vb)):
            show = [("(absent)" if v is missing else repr(v)) for v in (va, vb)]
            diffs.append(f"{k}: {names[0]} {show[0]}, {names[1]} {show[1]}")
    if len(diffs) > limit:
        diffs = [*diffs[:limit], f"and {len(diffs) - limit} more"]
    return "; ".join(diffs)


def _same_number(a: Any, b: Any) -> bool:
    num = (int, float)
    return (isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool)
            and not isinstance(b, bool) and a == b)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


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
    pio.atomic_write_json(out / runs.METRICS_FILE, metrics)
    write_figures(out / runs.FIGURES_DIR, vae, history, train, test)
    return metrics


def write_figures(folder: Path, vae: VAE, history: Any, train: Dataset,
                  test: Dataset | None) -> list[Path]:
    shown = test if test is not None else train
    paths = [save_figure(tplots.learning_curve(history), folder / "learning_curve.png")]
    torch.manual_seed(0)
    y = shown.y if getattr(vae.context, "dim", 0) else None  # a conditional VAE's context
    with torch.no_grad():
        z_mean = _latent_means(vae, shown.x, y)
    paths.append(save_figure(tplots.latent_map(z_mean, shown.y), folder / "latent_map.png"))
    if shown.image_shape is not None:
        x = shown.x[:20]
        recon = vae.reconstruct(x) if y is None else vae.reconstruct(x, y[:20])
        paths.append(save_figure(
            tplots.reconstructions(x, recon, shown.image_shape),
            folder / "reconstructions.png",
        ))
        drawn = vae.sample(100) if y is None else vae.sample(100, y=y[:100])
        paths.append(save_figure(
            tplots.samples(drawn, shown.image_shape), folder / "samples.png"
        ))
    return paths


def _latent_means(vae: VAE, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    from pyrovae.model.vae import _dist_mean

    return _dist_mean(vae.encode(x) if y is None else vae.encode(x, y))


def evaluate_run(path: str | Path, *, num_samples: int | None = None,
                 split: str = "test") -> dict[str, Any]:
    """Re-evaluate a run folder on its own data split (rebuilt from the spec)."""
    vae, spec, _ = runs.load_run(path)
    _, train, test = load_data(spec)
    data = train if split == "train" or test is None else test
    k = num_samples or spec["eval"]["num_samples"]
    return {"split": "train" if data is train else "test",
            **summary(evaluate(vae, data.x, num_samples=k))}
