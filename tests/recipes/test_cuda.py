"""The engine's CUDA path: training, bf16 autocast, channels-last, checkpoints and resume on a GPU.

Skipped where there is no GPU (CI never has one); `scripts/gpu_session.sh` runs it on a lent machine.
"""

from __future__ import annotations

import pytest
import torch

from recipes.engine import Trainer, train
from tests.recipes.toys import RegressionObjective, toy_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_engine_trains_on_cuda_with_bf16_and_resumes(tmp_path):
    config = toy_config(device="auto", precision="auto", epochs=2, max_steps=4)
    trainer = Trainer(RegressionObjective(config), run_dir=tmp_path / "run")
    trainer.fit()
    assert trainer.device.type == "cuda" and trainer.precision_name == "bf16"
    assert all(p.device.type == "cuda" for p in trainer.models["model"].parameters())
    assert trainer.ctx.generator.device.type == "cuda"
    resumed = Trainer(RegressionObjective(toy_config(device="auto", epochs=2)), run_dir=tmp_path / "run")
    resumed.fit()
    assert resumed.global_step > 4


@pytest.mark.parametrize("preset", ["dncnn.photos", "espcn_x4.photos", "fcn_resnet8_small.scenes"])
def test_presets_take_a_step_on_cuda(preset, tmp_path):
    """Every random draw of a train step happens on the generator's device (a CPU draw from a CUDA
    generator is an error): two steps of the presets that draw noise, symmetries and affine maps."""
    overrides = ["max_steps=2", "progress=false", "tensorboard=false"]
    if preset.endswith(".scenes"):
        overrides += ["fresh_scenes=0", "pictures=0"]
    result = train(preset, overrides, out=tmp_path / "run")
    assert result.steps == 2 and result.weight_folder is not None
