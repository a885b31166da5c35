"""spec → data → VAE → fit → run folder, and back: the steps behind the CLI.

Each function takes plain values and returns plain results; the CLI only parses
arguments and formats what these return.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyro
import torch

from pyrovae import io as pio
from pyrovae.data import (
    Dataset,
    TensorSource,
    check_class_labels,
    dataset_names,
    load_dataset,
    mask_labels,
    train_test_split,
)
from pyrovae.errors import PyrovaeError
from pyrovae.estimators.classification import classification_metrics, label_probabilities
from pyrovae.estimators.evaluate import evaluate, summary
from pyrovae.model.vae import VAE
from pyrovae.plots import latent, save_figure
from pyrovae.plots import training as tplots
from pyrovae.plots.captions import captions_for
from pyrovae.progress import Progress, from_flag
from pyrovae.registry import REGISTRIES
from pyrovae.runs import folder as runs
from pyrovae.runs.budget import check_size
from pyrovae.runs.spec import (
    Spec,
    bound_spec_hash,
    check_num_samples,
    dump_spec,
    normalize_spec,
    section_hashes,
    spec_diff,
)
from pyrovae.training.config import num_threads
from pyrovae.training.stopping import EarlyStopping
from pyrovae.training.tracking import require_trackers, trackers_for
from pyrovae.training.trainer import STATE_KEYS, DivergenceError, TrainConfig, Trainer


def load_data(spec: Mapping[str, Any]) -> tuple[Dataset, Dataset, Dataset | None]:
    """``(full, train, test)`` as the spec's ``data`` section describes (seeded split)."""
    d = normalize_spec(spec).data_config
    full = load_dataset(d.name, path=d.path, transform=d.transform, header=d.header)
    train, test = train_test_split(full, d.test_fraction, d.split_seed)
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


def build(spec_raw: Mapping[str, Any] | None, *, size_limit: float = 1.0,
          likelihood_from_data: bool | None = None
          ) -> tuple[Spec, VAE, Dataset, Dataset | None]:
    """Validate the spec (a ``Spec`` is taken as it is), load the data, check it against
    the likelihood, build the VAE.  ``likelihood_from_data``: whether the data choose
    the likelihood (None: when the spec given names none).

    Nothing is written; every user error is raised here, before training.
    """
    spec = normalize_spec(spec_raw)
    check_train_section(spec)
    require_trackers(spec["track"])  # an optional package missing: said before any work
    check_size(spec, scale=size_limit)  # before the data: a lower bound (D unknown)
    spec = _absolute_data_paths(spec)
    _, train, test = load_data(spec)
    # what the data decide, validated as it is filled in (the rest is not validated again)
    changes: dict[str, Any] = {}
    if likelihood_from_data is None:
        likelihood_from_data = not (spec_raw or {}).get("likelihood")
    if likelihood_from_data:
        changes["likelihood"] = default_likelihood(train.x)
    if spec["data_dim"] is None:
        changes["data_dim"] = train.data_dim
    elif spec["data_dim"] != train.data_dim:
        raise PyrovaeError(
            f"data_dim: spec says {spec['data_dim']}, data {spec['data']['name']!r} "
            f"has {train.data_dim}"
        )
    if spec["event_shape"] is None:  # the data's own shape (an MLP flattens it)
        changes["event_shape"] = list(train.event_shape)
    elif tuple(spec["event_shape"]) != train.event_shape:
        raise PyrovaeError(
            f"event_shape: spec says {spec['event_shape']}, data {spec['data']['name']!r} "
            f"has examples of shape {list(train.event_shape)}"
        )
    if spec["data"]["transform"] is None:  # record the default it resolved to
        changes["data"] = {**spec["data"], "transform": train.transform}
    if changes:
        spec = spec.replace(changes)
    check_size(spec, scale=size_limit)  # the sizes known, before anything is allocated
    pyro.set_rng_seed(spec["train"]["seed"])
    vae = VAE.from_spec(spec)  # the kind the spec's ``model`` names
    vae.likelihood.check_data(train.x, f"data {spec['data']['name']!r}")
    if getattr(vae, "label_latent", False):
        training_labels(spec, vae, train)  # labels present, in range; enough of each class
    return spec, vae, train, test


def _absolute_data_paths(spec: Spec) -> Spec:
    """The spec with its data file paths made absolute, so a run finds its data from
    any directory (``data.name`` when it is a file, ``data.path``)."""
    d = dict(spec["data"])
    if (isinstance(d["name"], str) and d["name"] not in dataset_names()
            and os.path.exists(d["name"])):
        d["name"] = os.path.abspath(d["name"])
    if isinstance(d["path"], str) and d["path"] and os.path.exists(d["path"]):
        d["path"] = os.path.abspath(d["path"])
    return spec if d == spec["data"] else spec.replace({"data": d})


def check_train_section(spec: Mapping[str, Any]) -> TrainConfig:
    """The spec's ``train`` section as a :class:`TrainConfig` (its checks beyond the
    spec's types: the seed's range, the device exists), errors named ``train.KEY``;
    made once per ``Spec`` (``Spec.train_config``)."""
    return normalize_spec(spec).train_config


def training_labels(spec: dict[str, Any], vae: VAE, train: Dataset) -> torch.Tensor | None:
    """What a model is trained with as ``y``: a conditional VAE's context; for a model
    whose label is a latent, the training labels with all but the spec's labelled
    fraction (or count) set to −1, chosen by ``data.split_seed``
    (:func:`~pyrovae.data.mask_labels`)."""
    if not getattr(vae, "label_latent", False):
        return _context(vae, train)
    m = spec["model"]
    return mask_labels(_labels_of(vae, train), vae.classes, fraction=m["labelled_fraction"],
                       count=m["labelled_count"], seed=spec["data"]["split_seed"])


def _labels_of(vae: VAE, data: Dataset) -> torch.Tensor:
    """The labels of ``data`` for a model whose label is a latent, checked once."""
    if data.y is None:
        raise PyrovaeError(f"model: {vae.spec['model']['family']!r} learns from labels; "
                           f"data {data.name!r} has none")
    return check_class_labels(data.y, vae.classes, f"labels of data {data.name!r}",
                              allow_unlabelled=False)


#: What builds a run's trainer from ``(spec, vae, train, test, progress=...)``, with
#: the signature of :func:`trainer_for` (under torchrun, :mod:`pyrovae.runs.distributed`'s).
TrainerFactory = Callable[..., Trainer]


def trainer_for(spec: dict[str, Any], vae: VAE, train: Dataset, test: Dataset | None,
                *, progress: bool = True, callbacks=(),
                trainer_class: Callable[..., Trainer] = Trainer) -> Trainer:
    """The trainer of a run: the spec's train section, objective, schedule and early
    stopping, the data's context (``trainer_class``: :class:`Trainer`, or a callable
    with its signature)."""
    return trainer_class(
        vae, train.x, check_train_section(spec), test_data=None if test is None else test.x,
        y=training_labels(spec, vae, train),
        test_y=None if test is None else _context(vae, test),
        # built from the validated entries, not validated again by the trainer
        objective=REGISTRIES["objective"].instantiate(spec["objective"]),
        kl_weight=REGISTRIES["kl_weight"].instantiate(spec["kl_weight"]), progress=progress,
        callbacks=callbacks, early_stopping=early_stopping_for(spec, test),
    )


def early_stopping_for(spec: dict[str, Any], test: Dataset | None) -> EarlyStopping | None:
    """The spec's early stopping (None when off); a clear error when it watches the
    held-out ELBO of a run without held-out data."""
    es = normalize_spec(spec).stopping_rule
    if es is not None and es.monitor == "test_elbo" and test is None:
        raise PyrovaeError("early_stopping: it watches the held-out ELBO (test_elbo) and "
                           "this run has no held-out data (data.test_fraction is 0)")
    return es


def _best_rule(spec: dict[str, Any]) -> EarlyStopping:
    """What decides the best epoch: the early-stopping monitor, else the held-out ELBO."""
    return EarlyStopping.from_section({**spec["early_stopping"], "enabled": True})


def _context(vae: VAE, data: Dataset) -> torch.Tensor | None:
    """The context a conditional VAE is given: the data set's labels (None otherwise;
    None for a model whose label is a latent: evaluation sums it out)."""
    if not getattr(vae.context, "dim", 0) or getattr(vae, "label_latent", False):
        return None
    if data.y is None:
        raise PyrovaeError(f"context: the {vae.context.family!r} context needs labels; "
                           f"data {data.name!r} has none")
    return data.y


def checkpoint_state(trainer: Trainer, spec: dict[str, Any], data_fingerprint: str,
                     data_shape: tuple[int, ...] | None = None) -> dict:
    """The trainer's state plus what identifies the run: its spec and data fingerprint."""
    state = trainer.state_dict()
    # the spec itself is spec.yaml's alone: the checkpoint is bound to it by hashes
    state["spec_hash"] = bound_spec_hash(spec)
    state["spec_sections"] = section_hashes(spec)
    state["data_fingerprint"] = data_fingerprint
    if data_shape is not None:
        state["data_shape"] = list(data_shape)
    return state


class RunComplete(PyrovaeError):
    """``--resume`` of a run that has already trained all its epochs and been evaluated."""


def train_run(
    spec_raw: dict[str, Any] | None,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    size_limit: float = 1.0,
    make_trainer: TrainerFactory | None = None,
) -> dict[str, Any]:
    """Train the model a spec describes and write the run folder ``out``.

    Everything is validated (spec, data, likelihood support, device) before
    anything is written; the folder is locked (:class:`~pyrovae.runs.folder.RunLock`)
    while it is written.  An existing run is replaced only with
    ``overwrite=True``, and then the new run is built beside it and swapped in
    when it has finished: a new run that fails or is killed leaves the old one
    intact.  Returns the final metrics (also in ``out/metrics.json``).
    ``make_trainer``: what builds the trainer (:data:`TrainerFactory`; default
    :func:`trainer_for`; data-parallel under torchrun).
    """
    out = runs.replaceable_path(out)
    spec, vae, train, test = build(spec_raw, size_limit=size_limit)
    trainer = (make_trainer or trainer_for)(spec, vae, train, test, progress=progress)
    with runs.RunLock(out, "pyrovae train"):
        out, replace = runs.prepare_run_folder(out, overwrite=overwrite)
        if not replace:
            return _start(out, spec, vae, trainer, train, test)
        stage = runs.staging_folder(out)
        try:
            metrics = _start(stage, spec, vae, trainer, train, test, replacing=out)
        except BaseException as exc:
            shutil.rmtree(stage, ignore_errors=True)
            named = _name_users_folder(exc, stage, out)
            if named is exc:
                raise
            raise named from None
        runs.replace_folder_atomically(stage, out)
        return metrics


def _name_users_folder(exc: BaseException, stage: Path, out: Path) -> BaseException:
    """``exc`` naming ``out`` where it named the staging folder (deleted by now): an
    error message names the user's folder, never one of our temporary names."""
    if isinstance(exc, OSError) and exc.filename and str(stage) in str(exc.filename):
        return type(exc)(exc.errno, exc.strerror or str(exc),
                         str(exc.filename).replace(str(stage), str(out)))
    if isinstance(exc, PyrovaeError) and str(stage) in str(exc) and type(exc) is PyrovaeError:
        return PyrovaeError(str(exc).replace(str(stage), str(out)))
    return exc


def data_identity(spec: dict[str, Any], train: Dataset,
                  data_fingerprint: str | None = None) -> dict[str, Any]:
    """What finds the training data again and tells whether it changed: the spec's
    ``data`` entries (file paths absolute) and the SHA-256 fingerprint and shape
    (``data_fingerprint``: one already computed for ``train.x``; the data is hashed once
    per run)."""
    fp = fingerprint(train.x) if data_fingerprint is None else data_fingerprint
    return {"name": spec["data"]["name"], "path": spec["data"]["path"],
            "fingerprint": fp, "shape": list(train.x.shape)}


def _start(folder: Path, spec: dict[str, Any], vae: VAE, trainer: Trainer, train: Dataset,
           test: Dataset | None, *, replacing: Path | None = None) -> dict[str, Any]:
    """A new run in ``folder``: manifest first (our marker), then spec, then training."""
    data = data_identity(spec, train)
    runs.write_manifest(folder, "training", data)
    dump_spec(spec, folder / runs.SPEC_FILE)
    return _train_and_finish(folder, spec, vae, trainer, train, test, data,
                             replacing=replacing)


def resume_run(
    path: str | Path,
    spec_raw: dict[str, Any] | None = None,
    *,
    progress: bool = True,
    size_limit: float = 1.0,
    make_trainer: TrainerFactory | None = None,
) -> dict[str, Any]:
    """Continue the run in folder ``path`` from its last checkpoint and finish it.

    ``spec_raw=None`` resumes with the run's own spec.  A given spec must equal
    the run's except for ``train.epochs`` (e.g. raised, to train longer; never
    below the epochs done); the training data must have the fingerprint saved
    with the checkpoint.  The continued run ends with bitwise the same
    parameters as an uninterrupted one (same machine and thread count).  An
    unfinished start (killed before its first checkpoint) starts again from its
    spec.  A run that is complete raises :class:`RunComplete`.  Returns the final
    metrics.  ``make_trainer``: as :func:`train_run`'s.
    """
    path = runs.own_path(path)
    if not path.is_dir():
        raise PyrovaeError(f"run folder not found: {path}")
    with runs.RunLock(path, "pyrovae train --resume"):
        # what the folder is, before anything in it changes
        runs.check_layout(path)
        manifest = runs.read_manifest(path)  # a newer format version is refused here
        kind = runs.folder_kind(path)
        if manifest is None and kind != "unfinished":
            raise PyrovaeError(f"{path} is not a pyrovae run folder (no {runs.MANIFEST_FILE}); "
                               "pyrovae will not write in it")
        runs.clean_leftovers(path, lambda folder: True if folder == path else
                             runs.folder_kind(folder) in ("empty", "unfinished", "run"))
        if kind == "unfinished":
            return _restart_unfinished(path, spec_raw, progress, size_limit, make_trainer)
        state, saved = _saved_state(path)
        spec, vae, train, test = _resume_spec(path, saved, spec_raw, size_limit)
        ckpt = path / runs.CHECKPOINT_FILE
        done = state["epoch"]
        if spec["train"]["epochs"] < done:
            raise PyrovaeError(f"train.epochs: {spec['train']['epochs']} is fewer than the "
                               f"{done} epochs {path} has already trained")
        data = data_identity(spec, train)
        _check_same_data(path, state, spec, train, data["fingerprint"])
        if done == spec["train"]["epochs"] and (path / runs.METRICS_FILE).is_file():
            raise RunComplete(f"{path} is complete ({done} of {done} epochs, evaluated); to "
                              "train longer pass --epochs N above it; to evaluate again run "
                              "`pyrovae evaluate`")
        es = spec.stopping_rule
        stop = None if es is None else es.decide(state["history"].get("records", []))
        if stop is not None and stop.stop and (path / runs.METRICS_FILE).is_file():
            raise RunComplete(f"{path} is complete: early stopping ended it after epoch {done} "
                              f"(best {es.monitor} at epoch {stop.best_epoch}); to evaluate "
                              "again run `pyrovae evaluate` (--which best)")
        runs.load_model_state(vae, state, ckpt)  # names, shapes and dtypes are the model's
        trainer = (make_trainer or trainer_for)(spec, vae, train, test, progress=progress)
        try:
            trainer.load_state_dict(state)
        except PyrovaeError as exc:
            raise PyrovaeError(f"{ckpt}: cannot resume from it ({exc})") from None
        except (IndexError, KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise PyrovaeError(f"{ckpt}: cannot resume from it (malformed saved state: "
                               f"{type(exc).__name__})") from None
        _warn_thread_count(path, state, spec["train"]["threads"])
        if spec["train"]["epochs"] != saved["train"]["epochs"]:
            dump_spec(spec, path / runs.SPEC_FILE)
        return _train_and_finish(path, spec, vae, trainer, train, test, data)


def _restart_unfinished(path: Path, spec_raw: dict[str, Any] | None,
                        progress: bool, size_limit: float = 1.0,
                        make_trainer: TrainerFactory | None = None) -> dict[str, Any]:
    """Start again a run killed before its first checkpoint, from its (or the given) spec."""
    if spec_raw is None:
        if not (path / runs.SPEC_FILE).is_file():
            raise PyrovaeError(f"{path} is an unfinished start with no spec; start it again "
                               "with `pyrovae train --out` (and your config)")
        spec_raw = runs.read_spec(path / runs.SPEC_FILE)
    spec, vae, train, test = build(spec_raw, size_limit=size_limit)
    trainer = (make_trainer or trainer_for)(spec, vae, train, test, progress=progress)
    path, _ = runs.prepare_run_folder(path)
    return _start(path, spec, vae, trainer, train, test)


def _saved_state(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(checkpoint state, the run's spec)``, checked against each other.  ``spec.yaml``
    may only differ in ``train.epochs`` (a resume that raised it rewrites it before
    the next checkpoint: the larger number is the latest intent)."""
    if not (path / runs.SPEC_FILE).is_file():
        raise PyrovaeError(f"{path} is not a pyrovae run folder (no {runs.SPEC_FILE})")
    ckpt = path / runs.CHECKPOINT_FILE
    if not ckpt.is_file():
        raise PyrovaeError(f"{path}: no checkpoint to resume from ({runs.CHECKPOINT_FILE} "
                           "missing); start again with --overwrite")
    state = pio.load_checkpoint(ckpt)
    missing = [k for k in (*STATE_KEYS, "data_fingerprint") if k not in state]
    if "spec_hash" not in state and "spec" not in state:
        missing.append("spec_hash")
    if missing:
        raise PyrovaeError(f"{ckpt}: cannot resume from it (missing {', '.join(missing)})")
    done = state["epoch"]
    if isinstance(done, bool) or not isinstance(done, int) or done < 0:
        raise PyrovaeError(f"{ckpt}: cannot resume from it (bad epoch {pio.short(done)})")
    saved = runs.read_spec(path / runs.SPEC_FILE)
    edited = runs.spec_binding(state, saved, ckpt)
    if edited is not None:
        raise PyrovaeError(f"{path / runs.SPEC_FILE} no longer matches the checkpoint's spec "
                           f"({edited}); restore it, or start again with --overwrite")
    legacy = state.get("spec")  # a checkpoint written when it held its whole spec
    train = legacy.get("train") if isinstance(legacy, dict) else None
    ran = train.get("epochs") if isinstance(train, dict) else None
    if isinstance(ran, int) and not isinstance(ran, bool) and ran > saved["train"]["epochs"]:
        saved = saved.replace({"train": {**saved["train"], "epochs": ran}})
    return state, saved


def _resume_spec(path: Path, saved: dict[str, Any], spec_raw: dict[str, Any] | None,
                 size_limit: float = 1.0) -> tuple[dict[str, Any], VAE, Dataset, Dataset | None]:
    """Build the resumed run from the saved spec, or from a given one that may differ
    only in ``train.epochs`` (compared before and after the data are loaded)."""
    only = "(only train.epochs may change when resuming)"
    if spec_raw is not None:
        given = _absolute_data_paths(normalize_spec(spec_raw))
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
            raise PyrovaeError(f"cannot resume {path} with a different spec: {changed} {only}")
    spec, vae, train, test = build(
        saved if spec_raw is None else given, size_limit=size_limit,
        likelihood_from_data=spec_raw is not None and not spec_raw.get("likelihood"))
    # keys inferred from the data that a run folder written before they were recorded lacks
    unrecorded = tuple(k for k, v in (("event_shape", saved["event_shape"]),
                                      ("data.transform", saved["data"]["transform"])) if v is None)
    changed = spec_diff(saved, spec, ignore=("train.epochs", *unrecorded))
    if changed:
        raise PyrovaeError(f"cannot resume {path} with a different spec: {changed} {only}")
    return spec, vae, train, test


def _check_same_data(path: Path, state: dict[str, Any], spec: dict[str, Any],
                     train: Dataset, fp: str) -> None:
    """A PyrovaeError unless ``fp`` (the fingerprint of ``train.x``) is the saved one."""
    if fp != state["data_fingerprint"]:
        was = state.get("data_shape")
        was = f"shape {tuple(was)}, " if isinstance(was, list) else ""
        raise PyrovaeError(
            f"cannot resume {path} with different data: data.name "
            f"{pio.short(spec['data']['name'])} now gives training data of shape "
            f"{tuple(train.x.shape)}, fingerprint {fp[:12]}; the run was trained on "
            f"{was}fingerprint {str(state['data_fingerprint'])[:12]}"
        )


def _warn_thread_count(path: Path, state: dict[str, Any], train_threads: int | None) -> None:
    """Warn when the resumed run will train with another thread count than the saved one
    (``train.threads`` where set: the count training runs with, not the current one)."""
    threads = state.get("num_threads")
    now = torch.get_num_threads() if train_threads is None else train_threads
    if isinstance(threads, int) and threads != now:
        warnings.warn(
            f"resuming {path} with {now} threads; it ran with {threads}: "
            "the result may differ in the last bits from an uninterrupted run",
            stacklevel=3,
        )


def _train_and_finish(out: Path, spec: dict[str, Any], vae: VAE, trainer: Trainer,
                      train: Dataset, test: Dataset | None, data: dict[str, Any], *,
                      replacing: Path | None = None) -> dict[str, Any]:
    """:func:`_train_and_finish_threads` with ``train.threads`` threads (training and the
    final evaluation; torch's count restored afterwards)."""
    with num_threads(spec["train"]["threads"]):
        return _train_and_finish_threads(out, spec, vae, trainer, train, test, data,
                                         replacing=replacing)


def _train_and_finish_threads(out: Path, spec: dict[str, Any], vae: VAE, trainer: Trainer,
                              train: Dataset, test: Dataset | None, data: dict[str, Any], *,
                              replacing: Path | None = None) -> dict[str, Any]:
    """Train with history every epoch and checkpoints every ``checkpoint_every`` epochs
    and at the end (all atomic), the best held-out epoch's state in ``best.pt`` and
    periodic checkpoints in ``checkpoints/`` (the spec's ``checkpoint`` section), the
    spec's trackers logging each epoch; then evaluate and write metrics and figures.
    ``data``: the training data's identity (:func:`data_identity`, hashed once per run);
    ``replacing``: the run folder ``out`` (a staging folder) will replace.

    Every file is written atomically and decided from the trainer's state alone (the
    best epoch from the history), so a run killed at any point and resumed from
    ``checkpoint.pt`` rewrites them exactly as an uninterrupted run writes them.  The
    best state is kept in memory when it is reached and written to ``best.pt`` just
    before each ``checkpoint.pt`` (one write per checkpoint, not one per new best): a run
    killed in between loses nothing, since its resume replays those epochs from
    ``checkpoint.pt`` and reaches the same best state again."""
    every = spec["train"]["checkpoint_every"]
    policy = spec.checkpoint_policy
    ckpt = out / runs.CHECKPOINT_FILE
    best_rule = _best_rule(spec) if policy.keep_best and test is not None else None

    pending: dict[str, Any] = {}  # the best state not yet written

    def state_now() -> dict[str, Any]:
        return checkpoint_state(trainer, spec, data["fingerprint"], tuple(train.x.shape))

    def save_state(path: Path = ckpt) -> None:
        if path == ckpt and "best" in pending:  # best.pt first, then the checkpoint
            pio.save_checkpoint(out / runs.BEST_FILE, pending.pop("best"))
        pio.save_checkpoint(path, state_now())

    def save(trainer: Trainer, record: dict[str, Any]) -> None:
        pio.atomic_write_json(out / runs.HISTORY_FILE, trainer.history.to_dict())
        epoch = record["epoch"]
        if best_rule is not None and best_rule.monitor in record \
                and best_rule.decide(trainer.history.records).best_epoch == epoch:
            pending["best"] = state_now()  # copies of the tensors
        if policy.every and epoch % policy.every == 0:
            save_periodic(out, epoch, policy.keep, save_state)
        if epoch % every == 0 or epoch == trainer.epochs:
            save_state()

    if trainer.epoch == 0:
        save_state()  # a run killed before its first periodic checkpoint can resume too
    if getattr(vae, "label_latent", False) and test is not None:
        trainer.callbacks.append(_held_out_accuracy(vae, test))  # before the history is saved
    trainer.callbacks.append(save)
    trainer.callbacks.extend(trackers_for(spec["track"], out, (replacing or out).name))
    try:
        history = trainer.run()
        if trainer.stopped is not None and trainer.epoch % every:
            save_state()  # stopped early between checkpoints: the last state is the final one
    except DivergenceError as exc:
        lr = spec["train"]["lr"]
        if replacing is None:  # the trainer holds the last good state (checked finite): keep it
            save_state()
            pio.atomic_write_json(out / runs.HISTORY_FILE, trainer.history.to_dict())
            runs.write_manifest(out, "diverged", data)
            kept = f"the last good state (end of epoch {exc.good_epoch}) is kept in {ckpt}"
        else:
            kept = f"the new run was discarded and {replacing} still holds the previous run"
        raise DivergenceError(
            f"training diverged: {exc.detail}; {kept}; try a smaller train.lr (now {lr:g}), "
            "train.clip_norm (e.g. 10), a KL warm-up (kl_weight: linear) or rescaled data",
            epoch=exc.epoch, step=exc.step, what=exc.what, good_epoch=exc.good_epoch,
            detail=exc.detail,
        ) from None
    metrics = finish_run(out, spec, vae, history, train, test, stopped=trainer.stopped,
                         best=best_rule, progress=trainer.progress)
    runs.write_manifest(out, "finished", data)
    return metrics


def periodic_name(epoch: int) -> str:
    """The file of the periodic checkpoint after ``epoch`` (sorts by epoch)."""
    return f"epoch-{epoch:06d}.pt"


def save_periodic(out: Path, epoch: int, keep: int, save_state: Any) -> None:
    """Write ``checkpoints/epoch-NNNNNN.pt`` (atomically), then delete all but the last
    ``keep`` of them (our names only)."""
    folder = out / runs.CHECKPOINTS_DIR
    folder.mkdir(exist_ok=True)
    save_state(folder / periodic_name(epoch))
    ours = sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.is_symlink() and _is_periodic(p.name))
    for p in ours[:-keep]:
        p.unlink(missing_ok=True)


def _is_periodic(name: str) -> bool:
    core = name.removeprefix("epoch-").removesuffix(".pt")
    return name == periodic_name(int(core)) if core.isdigit() else False


def finish_run(out: Path, spec: dict[str, Any], vae: VAE, history: Any,
               train: Dataset, test: Dataset | None, *, stopped: Any = None,
               best: EarlyStopping | None = None, progress: bool = False) -> dict[str, Any]:
    """Evaluate on train and test with the spec's K, write metrics and figures.
    ``stopped``: the early-stopping decision that ended training (if any); ``best``:
    the rule that picked ``best.pt`` (its epoch and value are recorded); ``progress``:
    each evaluation's progress on stderr (a line at most every 10 s off a terminal)."""
    vae.cpu()
    k = normalize_spec(spec).eval_config.num_samples

    def shown(split: str) -> Progress | None:
        return Progress(label=f"evaluate {split} (K={k})", force=True) if progress else None

    metrics: dict[str, Any] = {
        "epochs": history.last.get("epoch"),
        "seconds": history.last.get("seconds"),
        "train": summary(evaluate(vae, train.x, y=_context(vae, train), num_samples=k,
                                  progress=shown("train"))),
    }
    if test is not None:
        metrics["test"] = summary(evaluate(vae, test.x, y=_context(vae, test), num_samples=k,
                                           progress=shown("test")))
    if vae.context.dim and not getattr(vae, "label_latent", False):
        metrics["context"] = vae.context.family  # each log p(x) is log p(x | y), y the label
    if getattr(vae, "label_latent", False):  # q(y|x) as a classifier, on every label
        metrics["train"]["classification"] = _classification(vae, train)
        if test is not None:
            metrics["test"]["classification"] = _classification(vae, test)
    if best is not None:
        d = best.decide(history.records)
        if d.best_epoch is not None:
            metrics["best"] = {"epoch": d.best_epoch, best.monitor: d.best_value,
                               "file": runs.BEST_FILE}
    if stopped is not None:
        metrics["stopped_early"] = {"after_epoch": history.last.get("epoch"),
                                    "of_epochs": spec["train"]["epochs"],
                                    "best_epoch": stopped.best_epoch,
                                    "best_value": stopped.best_value}
    pio.atomic_write_json(out / runs.METRICS_FILE, metrics)
    require_finite(metrics, "the final evaluation")
    write_figures(out / runs.FIGURES_DIR, vae, history, train, test)
    return metrics


def _held_out_accuracy(vae: VAE, test: Dataset) -> Callable[[Trainer, dict[str, Any]], None]:
    """A callback adding ``test_accuracy`` (the held-out accuracy of q(y|x), a model whose
    label is a latent) to every epoch's record that has a held-out evaluation: the
    classifier's learning curve in the history, beside ``test_elbo``."""
    labels = _labels_of(vae, test)

    def record_accuracy(trainer: Trainer, record: dict[str, Any]) -> None:
        if "test_elbo" in record:
            probs = label_probabilities(vae, test.x)
            record["test_accuracy"] = float((probs.argmax(-1) == labels).double().mean())

    return record_accuracy


def _classification(vae: VAE, data: Dataset) -> dict[str, Any]:
    """Accuracy, ECE, NLL, reliability and confusion of q(y|x) on ``data``'s labels."""
    return classification_metrics(label_probabilities(vae, data.x), _labels_of(vae, data))


def require_finite(result: Mapping[str, Any], what: str) -> None:
    """A PyrovaeError naming the first non-finite number in ``result`` (nested), if any:
    no NaN is ever reported as a result."""
    _, places = pio.strict_json(dict(result))
    if places:
        raise PyrovaeError(f"{what} gave non-finite values ({', '.join(places[:3])}): the "
                           "model's parameters are finite but its likelihood is not; "
                           "retrain with a smaller train.lr or rescaled data")


def write_figures(folder: Path, vae: VAE, history: Any, train: Dataset,
                  test: Dataset | None) -> list[Path]:
    shown = test if test is not None else train
    paths = [save_figure(tplots.learning_curve(history), folder / "learning_curve.png")]
    torch.manual_seed(0)
    y = _context(vae, shown)  # a conditional VAE's context
    with torch.no_grad():
        z_mean = _latent_means(vae, shown.x, y)
    # several latent sites (hierarchical): the map is of z1's means (the encoder's), and
    # the prior is on another layer: no prior components, no decoded manifold
    traced = getattr(vae, "pyro_target", False)
    with torch.no_grad():
        components = None if traced else latent.prior_components(vae.prior_dist())
    paths.append(save_figure(tplots.latent_map(z_mean, shown.y, components),
                             folder / "latent_map.png"))
    if getattr(vae, "label_latent", False):
        paths += _label_figures(folder, vae, shown)
    if shown.image_shape is not None and vae.latent_dim == 2 and not vae.context.dim \
            and not traced:
        paths.append(save_figure(_manifold(vae, shown.image_shape), folder / "latent_manifold.png"))
    if shown.image_shape is not None:
        x = shown.x[:20]
        recon = vae.reconstruct(x) if y is None else vae.reconstruct(x, y[:20])
        paths.append(save_figure(
            tplots.reconstructions(x, recon, shown.image_shape),
            folder / "reconstructions.png",
        ))
        if y is None:
            fig = tplots.samples(vae.sample(100), shown.image_shape)
        elif vae.context.family == "label":  # one row per class
            classes = int(vae.context.classes)
            rows = torch.arange(classes).repeat_interleave(-(-100 // classes))
            fig = tplots.class_samples(vae.sample(len(rows), y=rows),
                                       shown.image_shape, classes)
        else:
            rows = torch.as_tensor(y[:100]).reshape(len(y[:100]), -1)  # one vector per draw
            fig = tplots.samples(vae.sample(len(rows), y=rows), shown.image_shape,
                                 title="samples from p(x | y), E[x|z, y], z ~ p(z); y: the "
                                 "contexts of the first held-out points")
        paths.append(save_figure(fig, folder / "samples.png"))
    # what each figure shows and how to read it, beside the figures (a check: report.json)
    pio.atomic_write_json(folder / runs.FIGURE_CAPTIONS_FILE,
                          captions_for({p.stem: str(p) for p in paths}))
    return paths


@torch.no_grad()
def _label_figures(folder: Path, vae: VAE, shown: Dataset) -> list[Path]:
    """A model whose label is a latent: the reliability diagram and confusion matrix of
    q(y|x) on the shown split's labels, and the style grid (images only)."""
    from pyrovae.plots import classification as cplots

    paths = []
    if shown.y is not None:
        m = _classification(vae, shown)
        paths.append(save_figure(cplots.reliability_diagram(m), folder / "reliability.png"))
        paths.append(save_figure(cplots.confusion_figure(m), folder / "confusion.png"))
    if shown.image_shape is not None:
        images = vae.style(shown.x[:8]).reshape(min(8, len(shown.x)), vae.classes, -1)
        paths.append(save_figure(cplots.style_figure(images, shown.image_shape),
                                 folder / "style.png"))
    return paths


@torch.no_grad()
def _manifold(vae: VAE, image_shape: tuple[int, int], n: int = 15) -> Any:
    """Decode a grid of z at the prior's marginal quantiles: the latent manifold."""
    z, a1, a2 = latent.manifold_grid(vae.prior_dist().sample((4000,)), n)
    images = vae.likelihood.mean(vae.decode(z))
    return latent.latent_manifold(images, image_shape, a1, a2)


def _latent_means(vae: VAE, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    from pyrovae.model.vae import _dist_mean

    if y is None and getattr(vae, "label_latent", False):
        y = vae.classify(x)  # z's mean given the predicted class
    return _dist_mean(vae.encode(x) if y is None else vae.encode(x, y))


def evaluate_run(path: str | Path, *, num_samples: int | None = None,
                 split: str = "test", which: str = "last",
                 progress: bool | None = False) -> dict[str, Any]:
    """Re-evaluate a run folder on its own data split (rebuilt from the spec, the
    data found by its absolute path and checked against the saved fingerprint);
    ``which="best"``: the weights of the best held-out epoch (``best.pt``).  The result
    says how many epochs were trained (``epochs_done`` of ``epochs``) and whether the
    run is ``finished`` (an interrupted run can be evaluated, but is marked so).
    ``progress``: ``False`` silent, ``None`` the evaluation's progress on a terminal
    only, ``True`` on any stderr (:func:`pyrovae.progress.from_flag`)."""
    if num_samples is not None:
        check_num_samples(num_samples, "--num-samples")
    vae, spec, _ = runs.load_run(path, history=False, which=which)
    _, train, test = load_run_data(path, spec)
    data = train if split == "train" or test is None else test
    k = num_samples or spec["eval"]["num_samples"]
    # epochs done from the last checkpoint (history.json is not read: evaluate never parses it)
    done = int(pio.load_checkpoint(Path(path) / runs.CHECKPOINT_FILE)["epoch"])
    planned = int(spec["train"]["epochs"])
    stopped_early = bool((spec.get("early_stopping") or {}).get("enabled"))
    finished = (Path(path) / runs.METRICS_FILE).is_file() and (done >= planned or stopped_early)
    conditional = bool(vae.context.dim) and not getattr(vae, "label_latent", False)
    result = {"split": "train" if data is train else "test", "which": which,
              "epochs_done": done, "epochs": planned, "finished": finished,
              "context": vae.context.family if conditional else None,
              **summary(evaluate(vae, data.x, y=_context(vae, data), num_samples=k,
                                 progress=from_flag(progress, f"evaluate (K={k})")))}
    if getattr(vae, "label_latent", False):
        result["classification"] = _classification(vae, data)
    require_finite(result, f"evaluating {path}")
    return result


def load_run_data(path: str | Path, spec: dict[str, Any]
                  ) -> tuple[Dataset, Dataset, Dataset | None]:
    """:func:`load_data` for a run folder, refusing data whose fingerprint differs
    from the one the run's manifest saved (the file changed since training)."""
    full, train, test = load_data(spec)
    manifest = runs.read_manifest(path) or {}
    saved = (manifest.get("data") or {}).get("fingerprint")
    if isinstance(saved, str) and saved != fingerprint(train.x):
        raise PyrovaeError(f"{path}: its training data {pio.short(spec['data']['name'])} "
                           f"changed since it was trained (fingerprint {saved[:12]} "
                           f"expected, {fingerprint(train.x)[:12]} found)")
    return full, train, test
