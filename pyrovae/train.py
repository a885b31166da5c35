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

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from pyrovae.data import as_tensor
from pyrovae.engines import make_engine
from pyrovae.errors import PyrovaeError
from pyrovae.evaluate import evaluate
from pyrovae.objectives import KLSchedule, Objective
from pyrovae.registry import OBJECTIVES, SCHEDULES


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


class Trainer:
    """The training loop behind :func:`fit`; holds everything needed to resume.

    ``state_dict()`` captures parameters, optimiser state, RNG states, epoch,
    step and history at an epoch boundary; ``load_state_dict`` restores them so
    that ``run()`` continues exactly where the saved run stopped.
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
        for name, value in (("epochs", epochs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PyrovaeError(f"{name}: expected a positive integer, got {value!r}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise PyrovaeError(f"lr: expected a positive number, got {lr!r}")
        if engine not in ("fast", "pyro"):
            raise PyrovaeError(f"engine: expected 'fast' or 'pyro', got {engine!r}")
        if isinstance(kl_weight, (int, float)) and not isinstance(kl_weight, bool):
            kl_weight = {"family": "constant", "value": float(kl_weight)}
        self.vae = vae
        self.objective = _resolve(OBJECTIVES, objective, "objective", Objective)
        self.schedule = _resolve(SCHEDULES, kl_weight, "kl_weight", KLSchedule)
        self.epochs, self.batch_size, self.lr, self.seed = epochs, batch_size, float(lr), seed
        self.clip_norm, self.eval_every, self.progress = clip_norm, eval_every, progress
        self.device = torch.device(device) if device is not None else _device_of(vae)
        self.callbacks = list(callbacks)

        self.x = as_tensor(data, "data")
        vae.likelihood.check_data(self.x, "data")
        self.x_test = None
        if test_data is not None:
            self.x_test = as_tensor(test_data, "test_data")
            vae.likelihood.check_data(self.x_test, "test_data")
        vae.to(self.device)
        self.x = self.x.to(self.device)
        self.num_data = self.x.shape[0]
        self.steps_per_epoch = math.ceil(self.num_data / batch_size)

        pyro.set_rng_seed(seed)
        self.shuffle = torch.Generator().manual_seed(seed)
        self.engine = make_engine(engine, vae, self.objective, self.lr, clip_norm)
        self.epoch = 0
        self.step = 0
        self.history = History()

    # --------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`run` needs to continue (tensors and plain data only)."""
        state: dict[str, Any] = {
            "model": {k: v.detach().clone() for k, v in self.vae.state_dict().items()},
            "optimizer": self.engine.state_dict(),
            "engine": self.engine.name,
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history.to_dict(),
            "rng_torch": torch.get_rng_state(),
            "rng_shuffle": self.shuffle.get_state(),
        }
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.vae.load_state_dict(state["model"])
        self.engine.load_state_dict(state["optimizer"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = History.from_dict(state["history"])
        torch.set_rng_state(state["rng_torch"])
        self.shuffle.set_state(state["rng_shuffle"])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)

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
        loss = float(total) / (self.num_data * self.steps_per_epoch)
        return loss, beta

    def run(self) -> History:
        """Train until ``epochs`` epochs are done; returns the history."""
        start = time.perf_counter() - (self.history.last.get("seconds", 0.0) if self.history else 0)
        bar = tqdm(
            total=self.epochs, initial=self.epoch, disable=not self.progress,
            desc="fit", unit="epoch", dynamic_ncols=True,
        )
        try:
            with pyro.validation_enabled(False):  # support checked once, above
                while self.epoch < self.epochs:
                    self.vae.train()
                    loss, beta = self._train_epoch()
                    self.epoch += 1
                    record: dict[str, Any] = {
                        "epoch": self.epoch, "step": self.step,
                        "train_loss": loss, "kl_weight": beta,
                    }
                    if not math.isfinite(loss):
                        raise PyrovaeError(
                            f"training diverged: non-finite loss in epoch {self.epoch} "
                            f"(step {self.step}); try a smaller lr, clip_norm, or a "
                            "likelihood with a bounded scale"
                        )
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

    Example:
        >>> history = fit(vae, train_x, epochs=50, test_data=test_x, seed=0)
        >>> history["test_elbo"][-1]
    """
    return Trainer(vae, data, **kwargs).run()
