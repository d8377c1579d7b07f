"""The Gaussian diffusion process: schedules, forward noising, training targets, DDPM and DDIM samplers.

- DDPM: "Denoising Diffusion Probabilistic Models", Ho et al., 2020 (https://arxiv.org/abs/2006.11239):
  ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``, a network trained to predict the noise, and the
  ancestral sampler with the "fixed small" variance ``beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t``.
- DDIM: "Denoising Diffusion Implicit Models", Song et al., 2021 (https://arxiv.org/abs/2010.02502): the
  same network, any subsequence of timesteps, ``eta`` from deterministic (0) to DDPM-like (1).
- Cosine schedule: Nichol & Dhariwal, 2021 (https://arxiv.org/abs/2102.09672).
- v-prediction: Salimans & Ho, 2022 (https://arxiv.org/abs/2202.00512), ``v = sqrt(abar) eps -
  sqrt(1 - abar) x_0``: the target keeps unit scale at every t, which trains faster on small budgets.
- Classifier-free guidance: Ho & Salimans, 2022 (https://arxiv.org/abs/2207.12598).

**One implementation, two backends.** Every function takes arrays that are either torch tensors or numpy
arrays and uses only arithmetic on them (plus `_clip`), with coefficients computed in float64 numpy from
the schedule; so ``model.sample`` (torch) and the torch-free runtime (``export.diffusion_runtime``, numpy
and onnxruntime) run literally the same code. The formulas are diffusers' ``DDPMScheduler`` /
``DDIMScheduler`` (``variance_type="fixed_small"``, ``clip_sample``, ``set_alpha_to_one=True``,
``steps_offset=0``), which the tests check number for number. One deliberate difference: the previous
timestep of a DDIM step is the next one in the sampling list (-1 after the last), as diffusers' DDPM does,
not ``t - T // steps``; the two agree whenever ``steps`` divides ``T`` and ours stays right when it does
not (a known diffusers pitfall with trailing spacing).

The network knows nothing of this module: it maps ``(x_t, t, labels)`` to a prediction. A weight records
the process it was trained with (`DiffusionProcess.to_dict`, stored in the builder's ``process``
argument), and a sampler is swapped at sampling time without touching the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from zoo.errors import ConfigError

__all__ = [
    "DEFAULT_SAMPLER",
    "PREDICTIONS",
    "SAMPLERS",
    "SCHEDULES",
    "SPACINGS",
    "DiffusionProcess",
    "StepOutput",
    "check_guidance",
    "check_labels",
    "check_n",
    "check_sampler",
    "check_steps",
    "cosine_betas",
    "guide",
    "linear_betas",
    "sample_loop",
]

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v")
SAMPLERS = ("ddpm", "ddim")
# How a model samples when neither the caller nor its weight says: DDIM, 50 steps, deterministic. One
# definition for `DiffusionUNet.sample` and the torch-free runtime.
DEFAULT_SAMPLER: dict[str, Any] = {"name": "ddim", "steps": 50, "eta": 0.0, "spacing": "trailing"}
SPACINGS = ("trailing", "leading")

DDPM_PAPER = "https://arxiv.org/abs/2006.11239"
DDIM_PAPER = "https://arxiv.org/abs/2010.02502"
COSINE_PAPER = "https://arxiv.org/abs/2102.09672"
V_PAPER = "https://arxiv.org/abs/2202.00512"
GUIDANCE_PAPER = "https://arxiv.org/abs/2207.12598"

Array = Any  # a torch.Tensor or a numpy.ndarray: the functions below accept either


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Ho et al.'s schedule: betas evenly spaced from `beta_start` to `beta_end` (float64)."""
    return np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal's schedule: ``abar(t) = cos((t / T + s) / (1 + s) * pi / 2) ** 2``, betas from its
    ratios, capped at `max_beta` (the last steps would otherwise be 1: a singular x_0 prediction)."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    steps = range(num_timesteps)
    return np.array(
        [min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta) for i in steps],
        dtype=np.float64,
    )


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _clip(x: Array, low: float, high: float) -> Array:
    return x.clamp(low, high) if _is_torch(x) else np.clip(x, low, high)


def _per_sample(table: np.ndarray, t: Array, like: Array) -> Array:
    """``table[t]`` for per-sample timesteps `t`, shaped (N, 1, 1, ...) to broadcast over `like`."""
    shape = (-1,) + (1,) * (like.ndim - 1)
    if _is_torch(like):
        import torch

        t = torch.as_tensor(t, device=like.device).long()
        values = torch.as_tensor(table, device=like.device)[t]
        return values.to(like.dtype).reshape(shape)
    return np.asarray(table)[np.asarray(t, dtype=np.int64)].astype(like.dtype).reshape(shape)


@dataclass(frozen=True)
class StepOutput:
    """One sampler step: the sample at the previous timestep and the step's prediction of x_0."""

    prev_sample: Array
    pred_original: Array


@dataclass(frozen=True)
class DiffusionProcess:
    """A forward process (its beta schedule) plus what the network predicts, and how samples are read.

    Images live in [-1, 1] (``clip_sample`` clips each x_0 prediction to it); `to_images` maps to [0, 1].
    """

    num_timesteps: int = 1000  # T: the training timesteps 0..T-1
    schedule: str = "linear"  # "linear" (Ho et al.) or "cosine" (Nichol & Dhariwal)
    beta_start: float = 1e-4  # linear schedule only
    beta_end: float = 0.02  # linear schedule only
    prediction: str = "epsilon"  # what the network predicts: "epsilon" (the noise) or "v"
    clip_sample: bool = True  # clip every x_0 prediction to [-1, 1] while sampling (the data's range)

    def __post_init__(self) -> None:
        if self.num_timesteps < 2:
            raise ConfigError(
                f"num_timesteps={self.num_timesteps}: a diffusion process needs at least 2 steps"
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule '{self.schedule}'; expected one of {', '.join(SCHEDULES)}")
        if self.prediction not in PREDICTIONS:
            raise ConfigError(
                f"unknown prediction '{self.prediction}'; expected one of {', '.join(PREDICTIONS)}"
            )
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ConfigError(
                f"betas must satisfy 0 < beta_start ({self.beta_start}) < beta_end ({self.beta_end}) < 1"
            )

    # ------------------------------------------------------------------------------ config
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DiffusionProcess:
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown diffusion process keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    # ------------------------------------------------------------------------------ schedule
    @property
    def betas(self) -> np.ndarray:
        if self.schedule == "cosine":
            return cosine_betas(self.num_timesteps)
        return linear_betas(self.num_timesteps, self.beta_start, self.beta_end)

    @property
    def alphas_cumprod(self) -> np.ndarray:
        """abar_t = prod_{s<=t} (1 - beta_s), float64, for t = 0..T-1."""
        return np.cumprod(1.0 - self.betas)

    def _abar(self, t: int) -> float:
        # abar of "timestep -1" is 1: the last step lands on clean data (diffusers' set_alpha_to_one).
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    # ------------------------------------------------------------------------------ training
    def add_noise(self, x0: Array, noise: Array, t: Array) -> Array:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise, with one timestep per sample."""
        abar = self.alphas_cumprod
        return _per_sample(np.sqrt(abar), t, x0) * x0 + _per_sample(np.sqrt(1 - abar), t, x0) * noise

    def target(self, x0: Array, noise: Array, t: Array) -> Array:
        """What the network learns to predict at (x_t, t): the noise, or v = sqrt(abar) eps - sqrt(1 - abar) x_0."""
        if self.prediction == "epsilon":
            return noise
        abar = self.alphas_cumprod
        return _per_sample(np.sqrt(abar), t, x0) * noise - _per_sample(np.sqrt(1 - abar), t, x0) * x0

    def predict(self, sample: Array, output: Array, t: int) -> tuple[Array, Array]:
        """(x_0, epsilon) predicted from the network's `output` at one timestep `t` (no clipping)."""
        a = self._abar(t)
        if self.prediction == "epsilon":
            return (sample - math.sqrt(1 - a) * output) / math.sqrt(a), output
        return math.sqrt(a) * sample - math.sqrt(1 - a) * output, math.sqrt(a) * output + math.sqrt(
            1 - a
        ) * sample

    # ------------------------------------------------------------------------------ sampling
    def timesteps(self, steps: int, spacing: str = "trailing") -> list[int]:
        """The `steps` timesteps a sampler visits, high to low.

        ``trailing`` starts at T - 1 (pure noise, as training saw it at the last timestep); ``leading``
        is diffusers' default (0, T/steps, ... reversed), which never visits T - 1.
        """
        check_steps(steps, self.num_timesteps)
        if spacing == "trailing":
            values = (
                np.round(np.arange(self.num_timesteps, 0, -self.num_timesteps / steps)).astype(np.int64) - 1
            )
        elif spacing == "leading":
            ratio = self.num_timesteps // steps
            values = (np.arange(0, steps) * ratio).round()[::-1].astype(np.int64)
        else:
            raise ConfigError(f"unknown timestep spacing '{spacing}'; expected one of {', '.join(SPACINGS)}")
        return [int(v) for v in values]

    def ddpm_step(self, output: Array, t: int, prev_t: int, sample: Array, noise: Array | None) -> StepOutput:
        """One ancestral step x_t -> x_{prev_t} (Ho et al.'s Eq. 6-7, fixed-small variance).

        `noise` (like `sample`) is needed when ``t > 0``; it is ignored at the last step.
        """
        a_t, a_prev = self._abar(t), self._abar(prev_t)
        alpha = a_t / a_prev  # the one-step alpha between the two visited timesteps
        beta = 1 - alpha
        x0, _ = self.predict(sample, output, t)
        if self.clip_sample:
            x0 = _clip(x0, -1.0, 1.0)
        mean = (math.sqrt(a_prev) * beta / (1 - a_t)) * x0 + (
            math.sqrt(alpha) * (1 - a_prev) / (1 - a_t)
        ) * sample
        if t > 0:
            if noise is None:
                raise ValueError(f"ddpm_step at t={t} needs noise")
            variance = max((1 - a_prev) / (1 - a_t) * beta, 1e-20)
            mean = mean + math.sqrt(variance) * noise
        return StepOutput(mean, x0)

    def ddim_sigma(self, t: int, prev_t: int, eta: float) -> float:
        """sigma_t of Song et al.'s Eq. 16: eta = 0 is deterministic, eta = 1 the DDPM posterior's std."""
        a_t, a_prev = self._abar(t), self._abar(prev_t)
        return eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))

    def ddim_step(
        self, output: Array, t: int, prev_t: int, sample: Array, eta: float = 0.0, noise: Array | None = None
    ) -> StepOutput:
        """One DDIM step x_t -> x_{prev_t} (Song et al.'s Eq. 12). `noise` is needed when eta > 0."""
        a_prev = self._abar(prev_t)
        x0, eps = self.predict(sample, output, t)
        if self.clip_sample:
            x0 = _clip(x0, -1.0, 1.0)  # epsilon stays the model's (diffusers' use_clipped_model_output=False)
        sigma = self.ddim_sigma(t, prev_t, eta)
        prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
        if eta > 0:
            if noise is None:
                raise ValueError(f"ddim_step with eta={eta} needs noise")
            prev = prev + sigma * noise
        return StepOutput(prev, x0)

    @staticmethod
    def to_images(x: Array) -> Array:
        """Samples in [-1, 1] -> images in [0, 1]."""
        return _clip((x + 1) / 2, 0.0, 1.0)


def check_steps(steps: int, num_timesteps: int) -> None:
    """A clear error for a step count a sampler cannot take."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= num_timesteps:
        raise ConfigError(f"steps={steps!r}: give a whole number of sampling steps from 1 to {num_timesteps}")


def check_sampler(sampler: str, eta: float) -> None:
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler '{sampler}'; expected one of {', '.join(SAMPLERS)}")
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"eta={eta}: DDIM's eta must be in [0, 1] (0 deterministic, 1 DDPM-like)")


def check_labels(labels: Any, n: int, num_classes: int, names: Sequence[str] = ()) -> list[int] | None:
    """Class indices for `n` samples from None, an int or a sequence (one label, or one per sample); a
    clear error naming the allowed labels otherwise. A conditional model given no labels cycles through
    its classes (a balanced grid); an unconditional one refuses labels."""
    if labels is None:
        return [i % num_classes for i in range(n)] if num_classes else None
    if not num_classes:
        raise ConfigError("this diffusion model is unconditional: it takes no labels (drop --labels)")
    values = [int(v) for v in np.asarray(labels).reshape(-1).tolist()]
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise ConfigError(f"got {len(values)} labels for {n} samples: give one label, or one per sample")
    bad = sorted({v for v in values if not 0 <= v < num_classes})
    if bad:
        names = list(names) or [str(i) for i in range(num_classes)]
        allowed = ", ".join(f"{i} ({name})" if name != str(i) else str(i) for i, name in enumerate(names))
        raise ConfigError(f"label(s) {bad} outside this model's labels; allowed: {allowed}")
    return values


def check_guidance(guidance: float | None, num_classes: int) -> None:
    if guidance is not None and not num_classes:
        raise ConfigError(
            "guidance needs a class-conditional model; this one is unconditional (drop --guidance)"
        )
    if guidance is not None and guidance < 0:
        raise ConfigError(f"guidance={guidance}: the guidance scale must be >= 0 (1: no guidance)")


def check_n(n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n={n!r}: the number of samples must be a whole number >= 1")


def guide(cond: Array, uncond: Array, scale: float) -> Array:
    """Classifier-free guidance: ``uncond + scale * (cond - uncond)`` (scale 1: plain conditional)."""
    return uncond + scale * (cond - uncond)


def sample_loop(
    denoise: Callable[[Array, int], Array],
    x: Array,
    process: DiffusionProcess,
    noise: Callable[[], Array],
    *,
    sampler: str = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    spacing: str = "trailing",
    callback: Callable[[int, int, Array, Array], None] | None = None,
) -> Array:
    """Run a sampler from `x` (x_T, unit Gaussian noise) down to x_0 and return it (in [-1, 1]).

    ``denoise(x_t, t)`` is the network's prediction at the (integer) timestep `t` for the whole batch,
    guidance already applied; ``noise()`` draws a standard normal array like `x`, and is called only for
    the steps that add noise (DDPM at t > 0, DDIM with eta > 0 where sigma > 0), in step order, so two
    runtimes that draw the same noise arrays in order give the same trajectory. ``callback(i, t, x_prev,
    x0_pred)`` sees every step. Default steps: T for DDPM, 50 for DDIM.
    """
    check_sampler(sampler, eta)
    steps = (process.num_timesteps if sampler == "ddpm" else 50) if steps is None else steps
    times: Sequence[int] = process.timesteps(steps, spacing)
    for i, t in enumerate(times):
        prev_t = times[i + 1] if i + 1 < len(times) else -1
        output = denoise(x, t)
        if sampler == "ddpm":
            out = process.ddpm_step(output, t, prev_t, x, noise() if t > 0 else None)
        else:
            stochastic = eta > 0 and process.ddim_sigma(t, prev_t, eta) > 0
            out = process.ddim_step(
                output, t, prev_t, x, eta if stochastic else 0.0, noise() if stochastic else None
            )
        x = out.prev_sample
        if callback is not None:
            callback(i, t, x, out.pred_original)
    return x
