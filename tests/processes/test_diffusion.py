"""The diffusion process against diffusers' DDPMScheduler / DDIMScheduler (a test-only dependency): same
schedules, forward noising, DDPM and DDIM steps on the same inputs; and the numpy backend equal to torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.errors import ConfigError
from zoo.processes.diffusion import DiffusionProcess, guide, sample_loop

diffusers = pytest.importorskip("diffusers")

SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
PROCESSES = [
    DiffusionProcess(schedule=s, prediction=p) for s in ("linear", "cosine") for p in ("epsilon", "v")
]


def _config(process: DiffusionProcess) -> dict:
    return dict(
        num_train_timesteps=process.num_timesteps,
        beta_start=process.beta_start,
        beta_end=process.beta_end,
        beta_schedule=SCHEDULES[process.schedule],
        prediction_type="v_prediction" if process.prediction == "v" else "epsilon",
        clip_sample=process.clip_sample,
    )


def _ddpm(process: DiffusionProcess):
    return diffusers.DDPMScheduler(**_config(process), variance_type="fixed_small")


def _ddim(process: DiffusionProcess, spacing: str = "leading"):
    return diffusers.DDIMScheduler(**_config(process), set_alpha_to_one=True, timestep_spacing=spacing)


def _inputs(seed: int = 0, n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randn(n, 1, 8, 8, generator=g)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_alphas_cumprod_match_diffusers(schedule):
    process = DiffusionProcess(schedule=schedule)
    theirs = _ddpm(process).alphas_cumprod.double().numpy()
    np.testing.assert_allclose(process.alphas_cumprod, theirs, rtol=1e-5, atol=1e-7)
    assert process.alphas_cumprod[-1] < 1e-3  # nearly pure noise at t = T - 1


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: f"{p.schedule}-{p.prediction}")
def test_add_noise_and_v_target_match_diffusers(process):
    x0, noise = _inputs()
    t = torch.tensor([0, 500, 999])
    sched = _ddpm(process)
    torch.testing.assert_close(
        process.add_noise(x0, noise, t), sched.add_noise(x0, noise, t), rtol=1e-5, atol=1e-5
    )
    if process.prediction == "v":
        torch.testing.assert_close(
            process.target(x0, noise, t), sched.get_velocity(x0, noise, t), rtol=1e-5, atol=1e-5
        )
    else:
        assert process.target(x0, noise, t) is noise


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: f"{p.schedule}-{p.prediction}")
@pytest.mark.parametrize("steps", [1000, 20])
def test_ddpm_step_matches_diffusers(process, steps):
    sched = _ddpm(process)
    sched.set_timesteps(steps)
    times = [int(t) for t in sched.timesteps]
    assert times == process.timesteps(steps, "leading")
    for i in (0, len(times) // 2, len(times) - 1):  # first, middle, and the last step (no noise)
        t = times[i]
        prev = times[i + 1] if i + 1 < len(times) else -1
        sample, output = _inputs(seed=i)
        theirs = sched.step(output, t, sample, generator=torch.Generator().manual_seed(7)).prev_sample
        noise = torch.randn(sample.shape, generator=torch.Generator().manual_seed(7))
        ours = process.ddpm_step(output, t, prev, sample, noise)
        torch.testing.assert_close(ours.prev_sample, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: f"{p.schedule}-{p.prediction}")
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_diffusers(process, spacing, eta):
    sched = _ddim(process, spacing)
    sched.set_timesteps(50)
    times = [int(t) for t in sched.timesteps]
    assert times == process.timesteps(50, spacing)
    for i in (0, 25, 49):
        t = times[i]
        prev = times[i + 1] if i + 1 < len(times) else -1
        sample, output = _inputs(seed=i)
        noise = torch.randn(sample.shape, generator=torch.Generator().manual_seed(i))
        theirs = sched.step(output, t, sample, eta=eta, variance_noise=noise)
        ours = process.ddim_step(output, t, prev, sample, eta, noise)
        torch.testing.assert_close(ours.prev_sample, theirs.prev_sample, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.pred_original, theirs.pred_original_sample, rtol=1e-5, atol=1e-5)


def test_numpy_backend_runs_the_same_loop():
    process = DiffusionProcess(schedule="cosine", prediction="v")
    x0, _ = _inputs(n=2)
    noises = [torch.randn(x0.shape, generator=torch.Generator().manual_seed(k)) for k in range(60)]

    def run(backend):
        draws = iter(noises if backend == "torch" else [z.numpy() for z in noises])
        start = x0 if backend == "torch" else x0.numpy()

        def denoise(x, t):  # any fixed function of (x, t) stands in for the network
            return 0.5 * x + 1e-3 * t

        return sample_loop(denoise, start, process, lambda: next(draws), sampler="ddim", steps=20, eta=0.7)

    np.testing.assert_allclose(run("torch").numpy(), run("numpy"), rtol=1e-5, atol=1e-5)
    assert isinstance(run("numpy"), np.ndarray)


def test_guidance_is_linear():
    cond, uncond = np.ones(3), np.zeros(3)
    assert np.allclose(guide(cond, uncond, 1.0), cond) and np.allclose(guide(cond, uncond, 0.0), uncond)
    assert np.allclose(guide(cond, uncond, 2.0), 2 * cond)


def test_bad_settings_name_the_allowed_values():
    with pytest.raises(ConfigError, match="linear, cosine"):
        DiffusionProcess(schedule="quadratic")
    with pytest.raises(ConfigError, match="epsilon, v"):
        DiffusionProcess(prediction="x0")
    with pytest.raises(ConfigError, match="from 1 to 1000"):
        DiffusionProcess().timesteps(-3)
    with pytest.raises(ConfigError, match="ddpm, ddim"):
        sample_loop(lambda x, t: x, np.zeros(1), DiffusionProcess(), lambda: None, sampler="euler")
    with pytest.raises(ConfigError, match="unknown diffusion process keys"):
        DiffusionProcess.from_dict({"timesteps": 10})
