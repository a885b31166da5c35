"""``fit``: stochastic variational inference on shuffled minibatches.

Each step draws a minibatch x_b of size B from N training points and takes a
gradient step on the objective's estimate of

    ELBO_β = (N / B) Σ_{i∈b} ( E_q[log p_θ(x_i|z)] − β_t · KL(q_φ(z|x_i) ‖ p(z)) )

with β_t from the KL-weight schedule (β = 1: the plain ELBO).  The minibatch
scale N/B is the ``"data"`` plate's; β is ``poutine.scale`` on the latent site.

Determinism: for a given VAE initialisation, data and seed, two runs on the same
machine and thread count produce the same parameters.  Held-out evaluation uses
its own seeded random stream, so evaluating does not change the training path.
"""

from __future__ import annotations

import inspect
import math
import numbers
import random
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from pyrovae.data import as_tensor
from pyrovae.errors import PyrovaeError
from pyrovae.estimators.evaluate import evaluate
from pyrovae.registry import OBJECTIVES, SCHEDULES
from pyrovae.training.engines import make_engine
from pyrovae.training.objectives import KLSchedule, Objective


@dataclass
class History:
    """Per-epoch records: ``epoch``, ``step``, ``train_loss`` (the training objective
    per example, negated: −ELBO_β / N), ``kl_weight`` (β in force at the epoch's
    last step), ``train_elbo`` and ``test_elbo`` (per example, nats, β = 1; present
    on evaluated epochs), ``seconds`` (training time so far)."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list[Any]:
        return [r.get(key) for r in self.records]

    @property
    def last(self) -> dict[str, Any]:
        return self.records[-1] if self.records else {}

    def to_dict(self) -> dict[str, Any]:
        return {"records": [dict(r) for r in self.records]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> History:
        return cls([dict(r) for r in d.get("records", [])])


def _resolve(registry, entry, path: str, base: type) -> Any:
    if isinstance(entry, base):
        return entry
    return registry.build(entry, path)


#: Layout version of the states written by :meth:`Trainer.state_dict`.
CHECKPOINT_FORMAT = 1

#: Entries every resumable state holds.
STATE_KEYS = (
    "model", "optimizer", "engine", "epoch", "step", "history", "rng_torch", "rng_shuffle",
)


class DivergenceError(PyrovaeError):
    """Training produced a non-finite loss, gradient, parameter or optimiser state.

    Attributes: ``epoch`` (the epoch that failed, 1-based), ``step`` (the first bad
    step, counted like ``History`` steps from the start of training, or ``None``
    when it could not be pinned down), ``what`` (``"loss"``, ``"gradient"``,
    ``"parameters"`` or ``"optimiser state"``), ``good_epoch`` (the epoch
    boundary whose state the trainer holds again) and ``detail`` (what happened
    and where, one phrase).
    """

    def __init__(self, message: str, *, epoch: int, step: int | None, what: str,
                 good_epoch: int, detail: str) -> None:
        super().__init__(message)
        self.epoch, self.step, self.what = epoch, step, what
        self.good_epoch, self.detail = good_epoch, detail


class _Found(Exception):
    def __init__(self, what: str, step: int) -> None:
        super().__init__(what, step)
        self.what, self.step = what, step


def _as_event(vae: Any, x: torch.Tensor, what: str) -> torch.Tensor:
    """``x`` in the VAE's event shape (flat data for an image VAE and back)."""
    return vae.as_event(x, what) if hasattr(vae, "as_event") else x


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise PyrovaeError(f"{name}: expected an integer, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        bound = f"at least {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise PyrovaeError(f"{name}: expected an integer {bound}, got {value}")
    return value


def _check_positive(name: str, value: Any) -> float:
    if (
        isinstance(value, bool) or not isinstance(value, numbers.Real)
        or not math.isfinite(value) or value <= 0
    ):
        raise PyrovaeError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def parse_device(device: Any) -> torch.device | None:
    """``torch.device(device)`` if it exists on this machine, else a PyrovaeError."""
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise PyrovaeError(f"device: expected a name such as 'cpu' or 'cuda', got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PyrovaeError(f"device: {device!r} is not a torch device ({first})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise PyrovaeError(f"device: {str(device)!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise PyrovaeError(
                f"device: {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise PyrovaeError(f"device: {str(device)!r} requested but MPS is not available")
    elif dev.type != "cpu":
        raise PyrovaeError(f"device: {str(device)!r} is not supported; use cpu, cuda or mps")
    return dev


def _clone(obj: Any) -> Any:
    """A copy of a nested state: tensors cloned (detached), containers rebuilt."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, Mapping):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_clone(v) for v in obj)
    return obj


def _tensors(obj: Any) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def _all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every floating tensor is finite: one host sync per device."""
    flags: dict[torch.device, list[torch.Tensor]] = {}
    for t in tensors:
        if t.is_floating_point() or t.is_complex():
            flags.setdefault(t.device, []).append(torch.isfinite(t).all())
    return all(bool(torch.stack(f).all()) for f in flags.values())


def _python_rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss}


def _numpy_rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


class Trainer:
    """The training loop behind :func:`fit`; holds everything needed to resume.

    ``state_dict()`` captures, at an epoch boundary, everything that decides the
    rest of the run: parameters and buffers, optimiser state (the engine is
    rebuilt fresh on load, so for the pyro engine the param store and Pyro's
    per-parameter optimisers are too), the global torch RNG (reparameterised
    draws, dynamic binarisation), the shuffle generator, Python's and NumPy's
    RNGs, the CUDA RNG on a GPU, epoch and step (the KL-weight schedule is a
    function of the step) and the history.  ``load_state_dict`` restores them so
    that ``run()`` continues exactly where the saved run stopped: same seed and
    thread count give bitwise the same parameters as an uninterrupted run.

    Divergence guard: the state at the start of each epoch is kept (an on-device
    copy of parameters and optimiser state; no host sync) and after each epoch
    one check, a single host sync, confirms that the epoch's loss, the
    parameters, buffers and optimiser state are finite.  If not, the epoch is
    replayed from the copy with a check after every step, which names the first
    bad step, the good state is restored and :class:`DivergenceError` is raised.
    Callbacks (checkpoints) only ever see checked epochs.
    """

    def __init__(
        self,
        vae: Any,
        data: Any,
        *,
        epochs: int = 100,
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
        callbacks: Iterable[Callable[[Trainer, dict[str, Any]], None]] = (),
    ) -> None:
        if not isinstance(vae, torch.nn.Module) or not hasattr(vae, "likelihood"):
            raise PyrovaeError(f"vae: expected a pyrovae VAE, got {type(vae).__name__}")
        epochs = _check_int("epochs", epochs, 1)
        batch_size = _check_int("batch_size", batch_size, 1)
        seed = _check_int("seed", seed, 0, 2**32 - 1)
        lr = _check_positive("lr", lr)
        if clip_norm is not None:
            clip_norm = _check_positive("clip_norm", clip_norm)
        if eval_every is not None:
            eval_every = _check_int("eval_every", eval_every, 0)  # 0: never
        if not isinstance(engine, str) or engine not in ("fast", "pyro"):
            raise PyrovaeError(f"engine: expected 'fast' or 'pyro', got {engine!r}")
        dev = parse_device(device)
        try:
            callbacks = list(callbacks)
        except TypeError:
            raise PyrovaeError(f"callbacks: expected callables, got {callbacks!r}") from None
        for cb in callbacks:
            if not callable(cb):
                raise PyrovaeError(f"callbacks: {cb!r} is not callable")
        if isinstance(kl_weight, (int, float)) and not isinstance(kl_weight, bool):
            kl_weight = {"family": "constant", "value": float(kl_weight)}
        self.vae = vae
        self.objective = _resolve(OBJECTIVES, objective, "objective", Objective)
        self.schedule = _resolve(SCHEDULES, kl_weight, "kl_weight", KLSchedule)
        self.epochs, self.batch_size, self.lr, self.seed = epochs, batch_size, lr, seed
        self.clip_norm, self.eval_every, self.progress = clip_norm, eval_every, progress
        self.device = dev if dev is not None else _device_of(vae)
        self.callbacks = callbacks
        self.engine_name = engine

        self.x = _as_event(vae, as_tensor(data, "data"), "data")
        vae.likelihood.check_data(self.x, "data")
        self.x_test = None
        if test_data is not None:
            self.x_test = _as_event(vae, as_tensor(test_data, "test_data"), "test_data")
            vae.likelihood.check_data(self.x_test, "test_data")
        vae.to(self.device)
        self.x = self.x.to(self.device)
        self.num_data = self.x.shape[0]
        self.steps_per_epoch = math.ceil(self.num_data / batch_size)

        pyro.set_rng_seed(seed)
        self.shuffle = torch.Generator().manual_seed(seed)
        self.engine = self._make_engine()
        self.epoch = 0
        self.step = 0
        self.history = History()
        #: (step, optimiser state) of the last load: until the next step, the state to save
        #: (Pyro's per-parameter optimisers only take a loaded state at their first step).
        self._loaded_optimizer: tuple[int, Any] | None = None

    def _make_engine(self) -> Any:
        # the fast engine checks once, on a few rows, that vae.model/guide are the
        # standard pair its estimator assumes (else: warning, stock SVI)
        return make_engine(self.engine_name, self.vae, self.objective, self.lr, self.clip_norm,
                           sample=self.x[: min(8, self.num_data)])

    # --------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`run` needs to continue: tensors (copies) and plain data only,
        so that ``torch.load(weights_only=True)`` reads it back."""
        state: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "model": _clone(self.vae.state_dict()),
            "optimizer": _clone(self._optimizer_state()),
            "engine": self.engine.name,
            "epoch": self.epoch,
            "step": self.step,
            "steps_per_epoch": self.steps_per_epoch,
            "num_data": self.num_data,
            "history": self.history.to_dict(),
            "rng_torch": torch.get_rng_state(),
            "rng_shuffle": self.shuffle.get_state(),
            "rng_python": _python_rng_state(),
            "rng_numpy": _numpy_rng_state(),
            "num_threads": torch.get_num_threads(),
        }
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _optimizer_state(self) -> Any:
        if self._loaded_optimizer is not None and self._loaded_optimizer[0] == self.step:
            return self._loaded_optimizer[1]  # nothing stepped since the load
        return self.engine.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; a state that does not fit raises PyrovaeError."""
        if not isinstance(state, Mapping):
            raise PyrovaeError(f"state: expected a mapping, got {type(state).__name__}")
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            raise PyrovaeError(
                f"state: not a resumable pyrovae state (missing {', '.join(missing)})"
            )
        if state["engine"] != self.engine.name:
            raise PyrovaeError(
                f"state: written by the {state['engine']!r} engine; this trainer uses "
                f"{self.engine.name!r}"
            )
        for key, mine in (("num_data", self.num_data), ("steps_per_epoch", self.steps_per_epoch)):
            if key in state and state[key] != mine:
                raise PyrovaeError(
                    f"state: {key} is {state[key]!r}, this trainer has {mine} "
                    "(different data or batch size)"
                )
        epoch, step = state["epoch"], state["step"]
        if not (isinstance(epoch, int) and isinstance(step, int) and 0 <= epoch and 0 <= step):
            raise PyrovaeError(f"state: bad epoch/step {epoch!r}/{step!r}")
        if epoch > self.epochs:
            raise PyrovaeError(
                f"epochs: the state is at epoch {epoch}, beyond this trainer's epochs={self.epochs}"
            )
        try:
            history = History.from_dict(state["history"])
        except (AttributeError, TypeError, ValueError):
            raise PyrovaeError("state: unreadable history") from None
        try:
            self.vae.load_state_dict(state["model"])
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PyrovaeError(f"state: parameters do not match the model ({first})") from None
        # A fresh engine receives the saved optimiser state (for the pyro engine,
        # Pyro's lazily created per-parameter optimisers pick it up at their first
        # step).  The state is copied: torch optimisers keep the tensors they load.
        self.engine = self._make_engine()
        try:
            self.engine.load_state_dict(_clone(state["optimizer"]))
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PyrovaeError(f"state: optimiser state does not match ({first})") from None
        try:
            torch.set_rng_state(state["rng_torch"])
            self.shuffle.set_state(state["rng_shuffle"])
            if "rng_python" in state:
                p = state["rng_python"]
                random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()),
                                 p["gauss_next"]))
            if "rng_numpy" in state:
                n = state["rng_numpy"]
                np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                                     n["has_gauss"], n["cached_gaussian"]))
            if "rng_cuda" in state and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PyrovaeError(f"state: bad random-number-generator state ({first})") from None
        self.epoch, self.step = epoch, step
        self.history = history
        self._loaded_optimizer = (step, _clone(state["optimizer"]))

    # ----------------------------------------------------------------- loop
    def _evaluate(self, x: torch.Tensor) -> float:
        return evaluate(self.vae, x, num_samples=1, seed=self.seed + 1)["elbo"]

    def _train_epoch(self) -> tuple[float, float]:
        perm = torch.randperm(self.num_data, generator=self.shuffle).to(self.device)
        total = torch.zeros((), device=self.device)
        beta = 1.0
        for b in range(self.steps_per_epoch):
            idx = perm[b * self.batch_size : (b + 1) * self.batch_size]
            xb = self.vae.likelihood.prepare_batch(self.x[idx])
            beta = self.schedule.weight(self.step, self.steps_per_epoch)
            total = total + self.engine.step(xb, self.num_data, beta)
            self.step += 1
        loss = float(self._reduce_loss(total)) / (self.num_data * self.steps_per_epoch)
        return loss, beta

    def _reduce_loss(self, total: torch.Tensor) -> torch.Tensor:
        """The epoch's summed loss over all workers (one process: itself)."""
        return total

    def run(self) -> History:
        """Train until ``epochs`` epochs are done; returns the history.

        Raises :class:`DivergenceError` (the trainer then holds the last good
        state, an epoch boundary) when a loss, gradient or parameter turns
        non-finite.
        """
        start = time.perf_counter() - (self.history.last.get("seconds", 0.0) if self.history else 0)
        bar = tqdm(
            total=self.epochs, initial=self.epoch, disable=not self.progress,
            desc="fit", unit="epoch", dynamic_ncols=True,
        )
        try:
            with pyro.validation_enabled(False), warnings.catch_warnings():
                # support is checked once, above; non-finite losses by the guard below
                warnings.filterwarnings("ignore", message="Encountered NaN")
                while self.epoch < self.epochs:
                    good = self.state_dict()  # on-device copies; no host sync
                    self.vae.train()
                    loss, beta = self._train_epoch()
                    self.epoch += 1
                    bad = self._nonfinite(loss)
                    if bad is not None:
                        self._diverged(good, bad)
                    record: dict[str, Any] = {
                        "epoch": self.epoch, "step": self.step,
                        "train_loss": loss, "kl_weight": beta,
                    }
                    if self.eval_every and (
                        self.epoch % self.eval_every == 0 or self.epoch == self.epochs
                    ):
                        record["train_elbo"] = self._evaluate(self.x)
                        if self.x_test is not None:
                            record["test_elbo"] = self._evaluate(self.x_test)
                    record["seconds"] = time.perf_counter() - start
                    self.history.records.append(record)
                    bar.update(1)
                    bar.set_postfix(
                        {k: f"{record[k]:.2f}" for k in ("train_elbo", "test_elbo") if k in record}
                    )
                    for cb in self.callbacks:
                        cb(self, record)
        finally:
            bar.close()
        return self.history

    # ------------------------------------------------------ divergence guard
    def _nonfinite(self, loss: float) -> str | None:
        """What is non-finite after an epoch (``None``: all good); one host sync."""
        if not math.isfinite(loss):
            return "loss"
        params = list(self.vae.state_dict().values())
        opt = list(_tensors(self.engine.state_dict()))
        if _all_finite(params + opt):
            return None
        return "parameters" if not _all_finite(params) else "optimiser state"

    def _replay(self, good: Mapping[str, Any]) -> _Found | None:
        """Re-run the failed epoch from ``good`` with a check after every step."""
        self.load_state_dict(good)
        engine = self.engine
        original = engine.step

        def checked(x: torch.Tensor, num_data: int, kl_weight: float) -> torch.Tensor:
            loss = original(x, num_data, kl_weight)
            step = self.step + 1
            if not bool(torch.isfinite(loss).all()):
                raise _Found("loss", step)
            grads = [p.grad for p in self.vae.parameters() if p.grad is not None]
            if not _all_finite(grads):
                raise _Found("gradient", step)
            if not _all_finite(self.vae.state_dict().values()):
                raise _Found("parameters", step)
            if not _all_finite(_tensors(engine.state_dict())):
                raise _Found("optimiser state", step)
            return loss

        engine.step = checked  # an instance attribute: this engine is dropped below
        try:
            self.vae.train()
            self._train_epoch()
        except _Found as found:
            return found
        return None

    def _diverged(self, good: Mapping[str, Any], what: str) -> None:
        epoch, first = self.epoch, int(good["step"]) + 1
        try:
            found = self._replay(good)
        finally:
            self.load_state_dict(good)
        names = {
            "loss": "non-finite loss",
            "gradient": "non-finite gradient",
            "parameters": "non-finite parameters after an update",
            "optimiser state": "non-finite optimiser state",
        }
        if found is not None:
            what = found.what
            where = (f"at epoch {epoch}, step {found.step} (step {found.step - first + 1} "
                     f"of {self.steps_per_epoch} in the epoch)")
        else:
            where = f"in epoch {epoch} (steps {first}-{first + self.steps_per_epoch - 1})"
        detail = f"{names[what]} {where}"
        raise DivergenceError(
            f"training diverged: {detail}; the trainer holds the last good state (end of "
            f"epoch {self.epoch}); try a smaller learning rate (lr={self.lr:g}), gradient "
            "clipping (clip_norm), a KL warm-up, or check the scale of the data",
            epoch=epoch, step=None if found is None else found.step, what=what,
            good_epoch=self.epoch, detail=detail,
        )


def _device_of(module: torch.nn.Module) -> torch.device:
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def fit(vae: Any, data: Any, **kwargs: Any) -> History:
    """Train ``vae`` on ``data`` with SVI; returns a :class:`History`.

    Keyword arguments (see :class:`Trainer`): ``epochs=100, batch_size=128,
    lr=1e-3, seed=0, test_data=None, objective="trace_elbo",
    kl_weight="constant"`` (a schedule entry or a number β), ``engine="fast"``
    (or ``"pyro"`` for stock ``SVI``), ``clip_norm=None, eval_every=1,
    progress=True, device=None, callbacks=()``.

    Raises :class:`~pyrovae.errors.PyrovaeError` for bad arguments or data and
    :class:`DivergenceError` (a PyrovaeError) when training diverges; ``vae``
    then holds the last good parameters.

    Example:
        >>> history = fit(vae, train_x, epochs=50, test_data=test_x, seed=0)
        >>> history["test_elbo"][-1]
    """
    known = [p for p in inspect.signature(Trainer.__init__).parameters
             if p not in ("self", "vae", "data")]
    unknown = sorted(str(k) for k in kwargs if k not in known)
    if unknown:
        raise PyrovaeError(
            f"fit: unknown argument(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return Trainer(vae, data, **kwargs).run()
