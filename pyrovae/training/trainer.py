"""``fit``: stochastic variational inference on shuffled minibatches.

Each step draws a minibatch x_b of size B from N training points and takes a
gradient step on the objective's estimate of

    ELBO_β = (N / B) Σ_{i∈b} ( E_q[log p_θ(x_i|z)] − β_t · KL(q_φ(z|x_i) ‖ p(z)) )

with β_t from the KL-weight schedule (β = 1: the plain ELBO).  The minibatch
scale N/B is the ``"data"`` plate's; β is ``poutine.scale`` on the latent site.

Each epoch's training ELBO, reconstruction and KL are the running means of the
minibatch terms the steps already computed (at β = 1 whatever the schedule), as a
hand-written loop logs them; the held-out ELBO is evaluated every ``eval_every``
epochs.  All data are read through :func:`pyrovae.data.as_source`
(:class:`~pyrovae.data.DataSource` batches), so streamed sources train unchanged.

The trainer is split by job: options (:mod:`~pyrovae.training.config`), the loop
(here), resumable state (:mod:`~pyrovae.training.state`), the divergence guard
(:mod:`~pyrovae.training.guard`) and the history (:mod:`~pyrovae.training.history`).

Determinism: for a given VAE initialisation, data and seed, two runs on the same
machine and thread count produce the same parameters.  Held-out evaluation uses
its own seeded random stream, so evaluating does not change the training path.

References:
    Hoffman, Blei, Wang & Paisley (2013), *Stochastic Variational Inference*.
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyro
import torch

from pyrovae.data import as_source
from pyrovae.data.source import Batch, DataSource, TensorSource
from pyrovae.errors import PyrovaeError
from pyrovae.estimators.evaluate import evaluate
from pyrovae.progress import Progress
from pyrovae.registry import OBJECTIVES, SCHEDULES, SEED_MAX
from pyrovae.training import state as _state
from pyrovae.training.config import TrainConfig, num_threads, parse_device
from pyrovae.training.engines import make_engine
from pyrovae.training.guard import CheckedEngine, DivergenceError, Found, divergence, nonfinite
from pyrovae.training.history import History
from pyrovae.training.objectives import KLSchedule, Objective
from pyrovae.training.optim import OptimChoice, lr_at
from pyrovae.training.state import CHECKPOINT_FORMAT, STATE_KEYS
from pyrovae.training.stopping import Decision, EarlyStopping, as_early_stopping

__all__ = ["CHECKPOINT_FORMAT", "STATE_KEYS", "DivergenceError", "EarlyStopping", "History",
           "TrainConfig", "Trainer", "fit", "parse_device"]

Callback = Callable[["Trainer", dict[str, Any]], None]

#: Record keys shown on a progress line, with their short names.
_SHOWN = (("train_elbo", "elbo"), ("test_elbo", "test"))


def _resolve(registry, entry, path: str, base: type) -> Any:
    if isinstance(entry, base):
        return entry
    return registry.build(entry, path)


def _device_of(module: torch.nn.Module) -> torch.device:
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _dtype_of(module: torch.nn.Module) -> torch.dtype:
    try:
        return next(module.parameters()).dtype
    except StopIteration:
        return torch.get_default_dtype()


#: id(tensor) -> (likelihood, version) of in-memory data already checked (dropped with
#: the tensor): calling fit(epochs=1) in a loop checks the data once.
_CHECKED: dict[int, tuple[Any, ...]] = {}


def _check_key(likelihood: Any, x: torch.Tensor) -> tuple[Any, ...]:
    return (id(likelihood), type(likelihood).__name__, getattr(likelihood, "support", ""),
            getattr(likelihood, "data_dim", None), x._version)


def _check_once(likelihood: Any, x: torch.Tensor, what: str) -> None:
    key = _check_key(likelihood, x)
    if _CHECKED.get(id(x)) == key:
        return
    likelihood.check_data(x, what)
    if id(x) not in _CHECKED:
        weakref.finalize(x, _CHECKED.pop, id(x), None)
    _CHECKED[id(x)] = key


def _source(data: Any, y: Any, what: str, vae: Any, device: torch.device) -> DataSource:
    """``data`` as a checked source; in-memory data moved to the model's device and dtype."""
    if (isinstance(data, torch.Tensor) and y is None
            and _CHECKED.get(id(data)) == _check_key(vae.likelihood, data)):
        src: DataSource = TensorSource(data)  # checked before: as_source would scan it again
    else:
        src = as_source(data, y, what)
    if isinstance(src, TensorSource):
        x = _as_event(vae, src.x, what)
        if x.is_floating_point():
            x = x.to(device=device, dtype=_dtype_of(vae))
        src = TensorSource(x.to(device), None if src.y is None else src.y.to(device))
        _check_once(vae.likelihood, src.x, what)
    else:
        vae.likelihood.check_data(_as_event(vae, src.head(64).x, what), what)
    return src


def _as_event(vae: Any, x: torch.Tensor, what: str) -> torch.Tensor:
    """``x`` in the VAE's event shape (flat data for an image VAE, and back)."""
    return vae.as_event(x, what) if hasattr(vae, "as_event") else x


class _Progress:
    """A tqdm bar on a terminal; plain per-epoch lines on stderr otherwise (and a
    within-epoch line at most every 10 s); or nothing."""

    def __init__(self, enabled: bool, total: int, initial: int) -> None:
        self.enabled, self.total, self.bar = enabled, total, None
        self.shown = ""  # the last epoch's numbers, kept beside the step count
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="fit", unit="epoch",
                            dynamic_ncols=True)

    def steps(self, epoch: int, total: int) -> Progress | None:
        """The within-epoch progress of ``epoch`` (``total`` steps): on a terminal in
        the bar's postfix (every 0.5 s); off one a line at most every 10 s (a short
        epoch shows none; its epoch line follows); ``None`` when disabled."""
        if not self.enabled:
            return None
        if self.bar is not None:
            bar = self.bar
            def show(line: str) -> None:
                bar.set_postfix_str(f"{self.shown}, {line}" if self.shown else line)

            return Progress(total, "step", sink=show, final=False)
        return Progress(total, f"fit: epoch {epoch}/{self.total}, step", force=True,
                        final=False)

    def update(self, record: Mapping[str, Any]) -> None:
        shown = {short: f"{record[k]:.2f}" for k, short in _SHOWN if k in record}
        if self.bar is not None:
            self.bar.update(1)
            self.shown = ", ".join(f"{k}={v}" for k, v in shown.items())
            self.bar.set_postfix_str(self.shown)
        elif self.enabled:
            parts = [f"epoch {record['epoch']}/{self.total}"]
            parts += [f"{k} {v}" for k, v in shown.items()]
            parts.append(f"{record['seconds']:.1f}s")
            print("fit: " + "  ".join(parts), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Trainer:
    """The training loop behind :func:`fit`; holds everything needed to resume.

    ``state_dict()`` captures, at an epoch boundary, everything that decides the
    rest of the run (:func:`pyrovae.training.state.capture`); ``load_state_dict``
    restores it so that ``run()`` continues exactly where the saved run stopped:
    same seed and thread count give bitwise the same parameters as an
    uninterrupted run.

    Divergence guard (:mod:`pyrovae.training.guard`): the state at the start of
    each epoch is kept (on-device copies; no host sync); after each epoch one check
    confirms that the epoch's loss and terms, the parameters, buffers and optimiser
    state, and the held-out evaluation are finite.  If not, the epoch is replayed
    through a :class:`~pyrovae.training.guard.CheckedEngine` that names the first
    bad step, the good state is restored and :class:`DivergenceError` is raised.
    Callbacks (checkpoints) only ever see checked epochs.
    """

    def __init__(
        self,
        vae: Any,
        data: Any,
        config: TrainConfig | None = None,
        *,
        objective: str | Mapping[str, Any] | Objective = "trace_elbo",
        kl_weight: str | Mapping[str, Any] | KLSchedule | float = "constant",
        test_data: Any = None,
        y: Any = None,
        test_y: Any = None,
        progress: bool = True,
        callbacks: Iterable[Callback] = (),
        early_stopping: EarlyStopping | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        """``config`` holds the scalar options (:class:`TrainConfig`); ``options`` are
        :class:`TrainConfig` fields given one by one (``Trainer(vae, x, epochs=3)``),
        applied over ``config``; the other arguments are :func:`fit`'s."""
        if not isinstance(vae, torch.nn.Module) or not hasattr(vae, "likelihood"):
            raise PyrovaeError(f"vae: expected a pyrovae VAE, got {type(vae).__name__}")
        if config is None:
            config = TrainConfig(**options)
        elif options:
            config = dataclasses.replace(config, **options)
        try:
            callbacks = list(callbacks)
        except TypeError:
            raise PyrovaeError(f"callbacks: expected callables, got {callbacks!r}") from None
        for cb in callbacks:
            if not callable(cb):
                raise PyrovaeError(f"callbacks: {cb!r} is not callable")
        if isinstance(kl_weight, (int, float)) and not isinstance(kl_weight, bool):
            kl_weight = {"family": "constant", "value": float(kl_weight)}
        self.config = config
        self.vae = vae
        self.objective = _resolve(OBJECTIVES, objective, "objective", Objective)
        self.schedule = _resolve(SCHEDULES, kl_weight, "kl_weight", KLSchedule)
        self.epochs, self.batch_size, self.lr = config.epochs, config.batch_size, config.lr
        self.seed, self.clip_norm = config.seed, config.clip_norm
        self.eval_every, self.progress = config.eval_every, bool(progress)
        dev = config.torch_device
        self.device = dev if dev is not None else _device_of(vae)
        self.callbacks = callbacks
        self.engine_name = config.engine
        self.early_stopping = as_early_stopping(early_stopping)
        #: the early-stopping decision that ended the run (None if it ran all its epochs)
        self.stopped: Decision | None = None
        if (self.early_stopping is not None and self.early_stopping.monitor == "test_elbo"
                and (test_data is None or not self.eval_every)):
            raise PyrovaeError("early_stopping.monitor: 'test_elbo' (the held-out ELBO) needs "
                               "test_data and eval_every >= 1")

        vae.to(self.device)
        _check_loader_batch_size(data, self.batch_size)
        self.source = _source(data, y, "data", vae, self.device)
        self.test_source = (None if test_data is None
                            else _source(test_data, test_y, "test_data", vae, self.device))
        self.num_data = self.source.num_data
        self.steps_per_epoch = self.source.num_batches(self.batch_size)

        pyro.set_rng_seed(self.seed)
        self.shuffle = torch.Generator().manual_seed(self.seed)
        self.engine = self.make_engine()
        self.epoch = 0
        self.step = 0
        self.history = History()
        #: the within-epoch progress of the epoch running (None: silent)
        self._tick: Progress | None = None
        #: (step, optimiser state) of the last load: until the next step, the state to save
        #: (Pyro's per-parameter optimisers only take a loaded state at their first step).
        self._loaded_optimizer: tuple[int, Any] | None = None

    @property
    def x(self) -> torch.Tensor:
        """The training observations (in-memory sources only)."""
        return self.source.x  # type: ignore[attr-defined]

    def make_engine(self) -> Any:
        """A fresh engine; the fast engine checks once, on a few rows, that
        vae.model/guide are the standard pair its estimator assumes (else: warning,
        stock SVI)."""
        head = self.source.head(8).to(self.device)
        return make_engine(self.engine_name, self.vae, self.objective, self.lr, self.clip_norm,
                           sample=_as_event(self.vae, head.x, "data"), sample_y=head.y,
                           optim=OptimChoice.from_config(self.config))

    # --------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`run` needs to continue (:func:`~pyrovae.training.state.capture`)."""
        return _state.capture(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; a state that does not fit raises PyrovaeError."""
        _state.restore(self, state)

    # ----------------------------------------------------------------- loop
    def _train_epoch(self) -> tuple[dict[str, float], float]:
        """One pass over the data; returns ({"loss": …, each term: …} per example, β).

        The terms are the objective's open record (``"reconstruction"``, ``"kl"`` and
        whatever it adds), summed on the device and read once per epoch."""
        names: list[str] | None = None
        sums = torch.zeros(1, device=self.device)
        beta = 1.0
        engine, device = self.engine, self.device
        for batch in self._batches():
            if batch.x.device != device:
                batch = batch.to(device)
            beta = self.schedule.weight(self.step, self.steps_per_epoch)
            loss = self._step(engine, batch, beta)
            if self._tick is not None:
                self._tick(1)
            terms = engine.last_terms
            if names is None:
                names = list(terms)
            sums = sums + torch.stack([loss.to(sums)] + [terms[k].to(sums) for k in names])
            self.step += 1
        totals = self._reduce(sums).tolist()  # the epoch's one host sync
        loss_sum = totals[0] / self.steps_per_epoch  # each step's loss is scaled to N
        values = {"loss": loss_sum / self.num_data}
        values.update({k: t / self.num_data for k, t in zip(names or [], totals[1:],
                                                            strict=True)})
        return values, beta

    def _batches(self) -> Iterable[Batch]:
        """The epoch's minibatches, shuffled by the trainer's generator."""
        return self.source.batches(self.batch_size, generator=self.shuffle)

    def _step(self, engine: Any, batch: Batch, beta: float) -> torch.Tensor:
        """One optimiser step on ``batch`` (prepared, e.g. binarised); its loss."""
        xb = self.vae.likelihood.prepare_batch(_as_event(self.vae, batch.x, "data"))
        return engine.step(xb, self.num_data, beta, y=batch.y)

    def _reduce(self, sums: torch.Tensor) -> torch.Tensor:
        """The epoch's sums over all workers (one process: itself)."""
        return sums

    def _evaluate(self) -> float:
        return evaluate(self.vae, self.test_source, num_samples=1,
                        seed=(self.seed + 1) % (SEED_MAX + 1))["elbo"]

    def _record(self, values: dict[str, float], beta: float, start: float,
                good: Mapping[str, Any], epoch_start: float) -> dict[str, Any]:
        rec, kl = values["reconstruction"], values["kl"]
        record: dict[str, Any] = {
            "epoch": self.epoch, "step": self.step, "train_loss": values["loss"],
            "kl_weight": beta, "train_elbo": rec - kl, "train_reconstruction": rec,
            "train_kl": kl,
        }
        record.update({f"train_{k}": v for k, v in values.items()
                       if k not in ("loss", "reconstruction", "kl")})
        record["kl_closed_form"] = self.engine.kl_closed_form
        due = self.eval_every and (self.epoch % self.eval_every == 0 or self.epoch == self.epochs)
        if due and self.test_source is not None:
            note = ""
            try:
                record["test_elbo"] = self._evaluate()
            except (ValueError, RuntimeError) as exc:  # e.g. parameters too large to score
                record["test_elbo"] = math.nan
                note = f" ({_state.first_line(exc)[:80]})"
            if not math.isfinite(record["test_elbo"]):
                self._fail(good, "evaluation", replay=False, note=note)
        record["lr"] = self._lr_in_force()
        norm = self._grad_norm()
        if norm is not None:
            record["grad_norm"] = norm
        now = time.perf_counter()
        record["seconds"] = now - start
        record["epoch_seconds"] = now - epoch_start
        return record

    def _schedule_lr(self) -> None:
        """Set the schedule's learning rate of the epoch about to run (a function of the
        epoch alone, so a resumed run follows it exactly); nothing for ``constant``."""
        c = self.config
        if c.lr_schedule == "constant":
            return
        self.engine.set_lr(lr_at(self.epoch, lr=c.lr, schedule=c.lr_schedule,
                                 epochs=c.epochs, gamma=c.lr_gamma, step=c.lr_step))

    def _lr_in_force(self) -> float:
        """The learning rate of the optimiser's (first) parameter group now: a schedule's
        current value, read from the optimiser itself."""
        opt = getattr(self.engine, "optimizer", None)
        groups = getattr(opt, "param_groups", None)
        if not groups:  # stock SVI: Pyro keeps one torch optimiser per parameter
            objs = getattr(getattr(self.engine, "optim", None), "optim_objs", None) or {}
            groups = next((o.param_groups for o in objs.values()), None)
        return float(groups[0]["lr"]) if groups else float(self.lr)

    def _grad_norm(self) -> float | None:
        """The L2 norm of the gradient of the epoch's last step (after clipping), where
        the engine leaves the gradients in place (the fast engine; stock SVI zeroes them:
        None)."""
        grads = [p.grad for p in self.vae.parameters() if p.grad is not None]
        if not grads:
            return None
        norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
        return norm if norm > 0 else None

    def run(self) -> History:
        """Train until ``epochs`` epochs are done; returns the history.

        Raises :class:`DivergenceError` (the trainer then holds the last good
        state, an epoch boundary) when a loss, gradient, parameter or the held-out
        evaluation turns non-finite.
        """
        with num_threads(self.config.threads):
            return self._run()

    def _run(self) -> History:
        start = time.perf_counter() - (self.history.last.get("seconds", 0.0) if self.history else 0)
        progress = _Progress(self.progress, self.epochs, self.epoch)
        try:
            with pyro.validation_enabled(False), warnings.catch_warnings():
                # support is checked once, above; non-finite losses by the guard below
                warnings.filterwarnings("ignore", message="Encountered NaN")
                while self.epoch < self.epochs:
                    if self._should_stop():
                        break
                    epoch_start = time.perf_counter()
                    self._schedule_lr()
                    good = self.state_dict()  # on-device copies; no host sync
                    self.vae.train()
                    self._tick = progress.steps(self.epoch + 1, self.steps_per_epoch)
                    try:
                        values, beta = self._train_epoch()
                    finally:
                        if self._tick is not None:
                            self._tick.close()
                        self._tick = None
                    self.epoch += 1
                    bad = nonfinite(values.values(), self.vae, self.engine)
                    if bad is not None:
                        self._fail(good, bad, replay=True)
                    record = self._record(values, beta, start, good, epoch_start)
                    self.history.records.append(record)
                    progress.update(record)
                    for cb in self.callbacks:
                        cb(self, record)
        finally:
            progress.close()
            for cb in self.callbacks:  # loggers flush and close their files
                close = getattr(cb, "close", None)
                if callable(close):
                    close(self)
        if self.stopped is not None and self.progress:
            d, es = self.stopped, self.early_stopping
            print(f"fit: stopped early after epoch {self.epoch}: {es.monitor} has not improved "
                  f"by more than {es.min_delta:g} in {es.patience} evaluations (best "
                  f"{d.best_value:.4f} at epoch {d.best_epoch})", file=sys.stderr, flush=True)
        return self.history

    def _should_stop(self) -> bool:
        """The early-stopping rule on the history so far (also right after a resume)."""
        if self.early_stopping is None:
            return False
        decision = self.early_stopping.decide(self.history.records)
        if decision.stop:
            self.stopped = decision
        return decision.stop

    # ------------------------------------------------------ divergence guard
    def _replay(self, good: Mapping[str, Any]) -> Found | None:
        """Re-run the failed epoch from ``good`` with a check after every step."""
        self.load_state_dict(good)
        self.engine = CheckedEngine(self.engine, self.vae, self.step + 1)
        try:
            self.vae.train()
            self._train_epoch()
        except Found as found:
            return found
        return None

    def _fail(self, good: Mapping[str, Any], what: str, *, replay: bool,
              note: str = "") -> None:
        epoch, first = self.epoch, int(good["step"]) + 1
        found = None
        try:
            if replay:
                found = self._replay(good)
        finally:
            self.load_state_dict(good)  # a fresh engine: the checked wrapper is dropped
        raise divergence(what=what, epoch=epoch, first=first,
                         steps_per_epoch=self.steps_per_epoch, found=found,
                         good_epoch=self.epoch, lr=self.lr, note=note)


def fit(
    vae: Any,
    data: Any,
    *,
    epochs: int = 300,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    test_data: Any = None,
    objective: str | Mapping[str, Any] | Objective = "trace_elbo",
    kl_weight: str | Mapping[str, Any] | KLSchedule | float = "constant",
    engine: str = "fast",
    clip_norm: float | None = None,
    eval_every: int | None = 1,
    progress: bool = True,
    device: str | torch.device | None = None,
    threads: int | None = 1,
    callbacks: Iterable[Callback] = (),
    y: Any = None,
    test_y: Any = None,
    early_stopping: EarlyStopping | Mapping[str, Any] | None = None,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    betas: tuple[float, float] | list[float] = (0.9, 0.999),
    lr_schedule: str = "constant",
    lr_gamma: float = 0.1,
    lr_step: int = 10,
) -> History:
    """Train ``vae`` on ``data`` by SVI; returns the :class:`History`.

    Args:
        vae: a :class:`~pyrovae.model.vae.VAE`.
        data: training data: tensor, array, :class:`~pyrovae.data.Dataset`,
            or any :class:`~pyrovae.data.DataSource` (streamed sources included).
        epochs, batch_size, lr, seed: passes, minibatch size, Adam learning rate,
            random seed in [0, 2**32 − 1]; every default is :class:`TrainConfig`'s (the
            one declaration of the training options, shared with the spec and the CLI).
        test_data: held-out data; its ELBO is evaluated every ``eval_every`` epochs
            (and after the last); ``0``/``None``: never.
        objective: an objective entry (default ``"trace_elbo"``: the ELBO with the
            closed-form KL where registered, else Monte Carlo; ``"trace_elbo_mc"``:
            Monte Carlo KL) or an :class:`~pyrovae.training.objectives.Objective`.
        kl_weight: a schedule entry or a number β.
        engine: ``"fast"`` (the direct estimator) or ``"pyro"`` (stock ``SVI``).
        clip_norm: gradient-norm clipping (``None``: off).
        progress: a bar on a terminal (the steps of the epoch running in its postfix),
            plain per-epoch lines on stderr otherwise, with a line within an epoch at
            most every 10 s (done/total steps and the time left).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``None`` (the model's).
        threads: ``torch.set_num_threads(threads)`` while training, the previous count
            restored afterwards; 1 by default (two threads of one process wait on each
            other when the cores are shared); ``None``: torch's setting as it is.
        callbacks: called as ``cb(trainer, record)`` after each checked epoch, with the
            epoch's record (every history term, ``kl_weight`` β, ``lr`` in force,
            ``grad_norm``, ``epoch_seconds``, ``seconds``); one with a ``close(trainer)``
            method has it called when training ends (loggers in
            :mod:`pyrovae.training.tracking`: CSV, JSON lines, TensorBoard, MLflow).
        y, test_y: context of the data (conditional models), if any.
        early_stopping: an :class:`EarlyStopping` (or a mapping of its options): stop
            when the held-out ELBO (its ``monitor``) has not improved by more than
            ``min_delta`` for ``patience`` evaluations; ``None``: run all epochs.
        optimizer, weight_decay, betas: ``"adam"`` or ``"adamw"``, its weight decay and
            its (β₁, β₂), in every engine (:mod:`pyrovae.training.optim`).
        lr_schedule, lr_gamma, lr_step: the learning rate per epoch: ``constant``,
            ``step`` (×γ every ``lr_step`` epochs), ``exponential`` (×γ per epoch),
            ``cosine`` (to 0 at the last epoch) or ``burda`` (×10^(−i/7) in stage i of
            3^i epochs, Burda et al. 2016).

    Raises :class:`~pyrovae.errors.PyrovaeError` for bad arguments or data and
    :class:`DivergenceError` (a PyrovaeError) when training diverges; ``vae``
    then holds the last good parameters.

    Example:
        >>> history = fit(vae, train_x, epochs=50, test_data=test_x, seed=0)
        >>> history["test_elbo"][-1]

    References:
        Kingma & Welling (2014), *Auto-Encoding Variational Bayes*.
        Hoffman, Blei, Wang & Paisley (2013), *Stochastic Variational Inference*.
    """
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, engine=engine,
                         clip_norm=clip_norm, eval_every=eval_every, device=device,
                         optimizer=optimizer, weight_decay=weight_decay, betas=betas,
                         lr_schedule=lr_schedule, lr_gamma=lr_gamma, lr_step=lr_step,
                         threads=threads)
    return Trainer(vae, data, config, objective=objective, kl_weight=kl_weight,
                   test_data=test_data, y=y, test_y=test_y, progress=progress,
                   callbacks=callbacks, early_stopping=early_stopping).run()


def _check_loader_batch_size(data: Any, batch_size: int) -> None:
    """fit draws its own minibatches (its ``batch_size``, its seeded order); a
    ``DataLoader`` built with another batch size is refused, naming both, rather than
    silently ignored."""
    from torch.utils.data import DataLoader

    if isinstance(data, DataLoader) and data.batch_size is not None \
            and data.batch_size != batch_size:
        raise PyrovaeError(f"data: the DataLoader's batch_size is {data.batch_size} but fit's "
                           f"batch_size is {batch_size}; fit draws its own minibatches of "
                           f"batch_size (pass batch_size={data.batch_size} to fit, or build "
                           f"the DataLoader with batch_size={batch_size})")
