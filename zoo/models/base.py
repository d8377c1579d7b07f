"""`ZooModel`: what every registered model offers the zoo's generic machinery.

Tests, export, analysis and adaptation (``num_classes=``, ``in_chans=``) use only this interface, so a new
family gets them for free by subclassing it and setting the class attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from zoo.models.features import FeatureInfo


class ZooModel(nn.Module):
    """Base class of the zoo's models.

    Subclasses set ``input_size`` (per-sample shape of the main input) in ``__init__`` and name, as
    dotted paths, their first convolution (``first_conv``, adapted when ``in_chans`` changes) and their
    classifier (``classifier``, re-initialised when ``num_classes`` changes). ``None`` means "has none".

    A backbone also sets ``feature_info`` (a `zoo.models.features.FeatureInfo`): its feature levels,
    shallow to deep, from which ``create_model(..., features_only=True)`` builds a feature pyramid. Its
    ``forward_features``, where it has one, returns the deepest level.
    """

    first_conv: str | None = None
    classifier: str | None = None
    input_size: tuple[int, ...] = (3, 32, 32)
    # Whether height and width of the input may differ from `input_size` (fully convolutional models).
    dynamic_size: bool = True
    # Names of forward's inputs, in order. One image by default; a model whose forward takes more (a
    # diffusion denoiser's (noisy_image, timestep, label)) names them all, and generic code that cannot
    # make those inputs from an image calls `example_inputs` instead (the ONNX graph's input names too).
    input_names: tuple[str, ...] = ("image",)
    # Names of forward's outputs in `flatten_outputs` order; None means the task's (`Task.output_names`).
    # The PyTorch predict path, the ONNX graph and the runtime all use these names.
    output_names: tuple[str, ...] | None = None
    # Feature levels for `features_only=True`; None: the model offers no feature pyramid.
    feature_info: FeatureInfo | None = None
    # Whether forward in train mode takes targets and returns a dict of losses, as torchvision's detectors
    # do; such a model implements `example_targets`. Generic tests and tools gate on this, never on names.
    train_needs_targets: bool = False
    # The task of this instance when it is not its architecture's: a self-supervised encoder (a feature
    # extractor) built with ``num_classes=`` is an image classifier. None: the registry's task.
    task: str | None = None

    def example_inputs(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Inputs that `forward` accepts, for tests, export and summaries."""
        device = next(self.parameters()).device
        return (torch.randn(batch_size, *self.input_size, generator=generator).to(device),)

    def example_targets(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Any:
        """Targets for a train-mode forward, for models with ``train_needs_targets``."""
        raise TypeError(f"{type(self).__name__} trains on its inputs alone (train_needs_targets is False)")

    def get_submodule_or_none(self, path: str | None) -> nn.Module | None:
        return None if path is None else self.get_submodule(path)

    def label_names(self) -> tuple[str, ...]:
        """The class names of the loaded weight (its ``labels``), else the class indices as strings; for
        error messages that list what a conditional model accepts."""
        meta = getattr(self, "pretrained_weights", None)
        if meta is not None and meta.labels:
            return tuple(meta.labels)
        return tuple(str(i) for i in range(int(getattr(self, "num_classes", 0) or 0)))


def flatten_outputs(output: Any) -> list[torch.Tensor]:
    """Every tensor of a model output (a tensor, a tuple/list, or a dict by sorted key), in a stable order.

    Tests, export and analysis compare outputs of any family through this one order.
    """
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for key in sorted(output) for t in flatten_outputs(output[key])]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in flatten_outputs(item)]
    raise TypeError(
        f"model output of type {type(output).__name__} is not a tensor, tuple/list or dict of tensors"
    )


def output_names_of(model: Any, count: int, task: Any) -> tuple[str, ...]:
    """The names of a model's `count` flattened outputs: the model's own, else its task's, else
    ``<first task name>_<i>``; never an exporter's auto names ('1801', 'output_0')."""
    names = getattr(model, "output_names", None) or tuple(task.output_names)
    if len(names) >= count:
        return tuple(names[:count])
    return tuple(f"{names[0]}_{i}" for i in range(count))


def named_outputs(model: Any, output: Any, task: Any) -> dict[str, Any]:
    """A model output as numpy arrays by name (the form `zoo.tasks.Task.postprocess` takes).

    A list of per-image dicts (torchvision's detectors) gives the first image's dict: detectors run one
    image per call in the predict paths.
    """
    if isinstance(output, list) and output and isinstance(output[0], dict):
        (output,) = output
        return {
            k: v.detach().float().numpy() if v.is_floating_point() else v.numpy() for k, v in output.items()
        }
    tensors = flatten_outputs(output)
    names = output_names_of(model, len(tensors), task)
    return {n: t.detach().float().numpy() for n, t in zip(names, tensors)}


def same_layout_hooks(family: str, libraries: tuple[str, ...]) -> tuple[Any, Any]:
    """``(state_dict_from, state_dict_to)`` for a family whose state dicts already use `libraries`' names.

    `zoo.importing` maps a checkpoint's keys through its family's hooks and never guesses: a family that
    shares torchvision's layout (FCN, DeepLab v3, the detectors) declares it with these, and the strict load
    that follows reports any key that does not fit.
    """

    def check(library: str) -> None:
        if library not in libraries:
            from zoo.errors import ConfigError

            raise ConfigError(
                f"no {family} checkpoint layout for '{library}'; this family reads {', '.join(libraries)}"
            )

    def state_dict_from(library: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        check(library)
        return dict(state_dict)

    def state_dict_to(library: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        check(library)
        return dict(state_dict)

    state_dict_from.__doc__ = (
        f"A {'/'.join(libraries)} {family} state dict in the zoo's layout (the same names)."
    )
    state_dict_to.__doc__ = (
        f"The zoo's {family} state dict in {'/'.join(libraries)}'s layout (the same names)."
    )
    return state_dict_from, state_dict_to
