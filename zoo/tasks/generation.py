"""Image generation: images from noise (and optionally a class): VAE, GAN, PixelCNN, diffusion.

A generator takes no input image: ``zoo sample`` draws from it. The weight records how to sample
(``latent_dim``, ``sampler`` settings such as ``{"name": "ddim", "steps": 50, "eta": 0.0}``,
``guidance_scale``) and the range its images come out in (``output_range``), so every runtime turns
outputs into the same uint8 pictures. Quality is FID against the test split, measured in the feature space
of a classifier named by ``fid_features`` (never the Inception weights: they would need a download).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from zoo.tasks import register_task
from zoo.tasks.base import Task, WeightField

__all__ = ["NLL_OUTPUT", "ImageGeneration", "samples_to_uint8"]

# The output a likelihood model's forward gives per image (VAE: an IWAE estimate), in bits per dimension.
NLL_OUTPUT = "nll_bits_per_dim"


def samples_to_uint8(x: np.ndarray, output_range: tuple[float, float] = (0.0, 1.0)) -> list[np.ndarray]:
    """(B, C, H, W) samples in ``output_range`` -> (H, W, C) uint8 images."""
    x = np.asarray(x, np.float32)
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) samples, got shape {x.shape}")
    low, high = output_range
    x = (x.transpose(0, 2, 3, 1) - low) / (high - low)
    return list((np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8))


@register_task
class ImageGeneration(Task):
    name = "image-generation"
    pipeline_tag = "unconditional-image-generation"
    summary = "new images drawn from a learned distribution (optionally class-conditional)"
    weight_fields = (
        WeightField("latent_dim", None, "size of the noise vector a sample starts from", (int,)),
        WeightField("sampler", None, "default sampler settings, e.g. {'name': 'ddim', 'steps': 50}", (dict,)),
        WeightField(
            "guidance_scale", None, "classifier-free guidance weight of class-conditional sampling", (float,)
        ),
        WeightField("output_range", (0.0, 1.0), "value range of the generated pixels", (tuple,)),
        WeightField("fid_features", None, "the zoo classifier whose features FID is measured in", (str,)),
        WeightField(
            "takes_images",
            False,
            "forward scores an input image (a VAE: reconstruction, NLL): `zoo predict` feeds it images",
            (bool,),
        ),
    )
    measured_on_samples = True
    headline_metrics = (("fid", "FID", "{:.2f}"), ("nll_nats", "NLL (nats)", "{:.1f}"))
    output_names = ("image",)
    outputs_doc = {
        "image": "(N, C, H, W) generated images in output_range",
        "reconstruction": "(N, C, H, W) the input image decoded again (from its posterior mean), in output_range",
        NLL_OUTPUT: "(N,) negative log-likelihood of each (binarized) input image, in bits per dimension",
        "logits": "(N, 1, H, W) the Bernoulli logit of each pixel given the pixels before it (raster order)",
    }

    def preprocess(self, image: np.ndarray, meta: Any, *, invert: bool = False) -> np.ndarray:
        if getattr(meta, "takes_images", False):
            return super().preprocess(image, meta, invert=invert)  # [0, 1] pixels at input_size
        from zoo.errors import ConfigError

        raise ConfigError(f"{meta.name} generates images and takes none: use `zoo sample {meta.name}`")

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        output_range = tuple(getattr(meta, "output_range", None) or (0.0, 1.0))
        if "reconstruction" in outputs or NLL_OUTPUT in outputs:
            return _scored(outputs, output_range)
        value = outputs["image"] if "image" in outputs else next(iter(outputs.values()))
        return samples_to_uint8(value, output_range)

    def describe(self, result: Any, source: str, *, out_dir: Path | None = None, **options: Any) -> str:
        if isinstance(result, Mapping):
            return _describe_scored(result, source, out_dir)
        if out_dir is None:
            return f"{source}: image {result.shape}"
        from zoo.tasks.draw import save_png

        return f"{source}: -> {save_png(result, Path(out_dir) / f'{source}.png')}"

    def metrics(self, meta: Any) -> dict[str, Any]:
        """FID in the feature space of the classifier the weight names (``fid_features``)."""
        name = getattr(meta, "fid_features", None)
        if not name:
            return {}
        from zoo.metrics import FID, classifier_features

        extractor, num_features = classifier_features(name)
        return {"fid": FID(extractor, num_features=num_features, input_img_size=tuple(meta.input_size))}

    def card_usage(self, meta: Mapping[str, Any], onnx_file: str) -> list[str]:
        return [
            f'session = ort.InferenceSession("{onnx_file}")',
            "# inputs are noise (and a class); see the file's zoo.outputs_doc metadata and `zoo sample`",
        ]

    def card_onnx_section(self, config: Mapping[str, Any], source: str, onnx_file: str) -> list[str]:
        """Sampling, in PyTorch and torch-free (`zoo sample --onnx` runs the family's numpy sampler over
        onnxruntime); a VAE samples from its decoder graph."""
        w = config.get("weights") or {}
        labels = " --labels 0,1,2,3,4,5,6,7,8,9" if w.get("labels") else ""
        decoder = bool(w.get("takes_images") and w.get("latent_dim"))  # a VAE samples from its decoder graph
        sampler = onnx_file.removesuffix(".onnx") + ".decoder.onnx" if decoder else onnx_file
        lines = [
            "Samples, a grid per call:",
            "",
            "```bash",
            f"zoo sample {source} --n 64{labels} --seed 0 --out grid.png",
            "```",
            "",
            "ONNX, to deploy without torch (the sampler runs in numpy over onnxruntime):",
            "",
            "```bash",
            f"zoo export {source} --out {onnx_file}",
            f"zoo sample --onnx {sampler} --n 64{labels} --out grid.png",
            "```",
            "",
            "```python",
            "from export.runtime import OnnxModel",
            "",
            f'images = OnnxModel("{sampler}").sample(16, seed=0{", labels=[7] * 16" if labels else ""})'
            "  # (16, 1, 28, 28) in [0, 1]",
            "```",
            "",
        ]
        if w.get("takes_images"):
            what = "reconstructs an image and scores its NLL" if decoder else "scores an image's NLL"
            lines[-2:-2] = [f"# {onnx_file} also {what}: zoo predict --onnx {onnx_file} digit.png"]
        return lines

    def card_sections(self, config: Mapping[str, Any]) -> list[str]:
        """Likelihood and sample quality as two readable tables (beside the full metric list), then the
        outputs and pictures."""
        metrics = (config.get("weights") or {}).get("metrics") or {}
        return likelihood_table(metrics) + sample_quality_table(metrics) + super().card_sections(config)


def _num(metrics: Mapping[str, Any], key: str, fmt: str) -> str:
    value = metrics.get(key)
    return "" if value is None else fmt.format(value)


def likelihood_table(metrics: Mapping[str, Any]) -> list[str]:
    """Card lines: the weight's test NLL beside the baselines the recipe measured on the same binarized
    digits (independent Bernoullis, a Bernoulli mixture), with the train split's for the gap."""
    if "nll_nats" not in metrics:
        return []
    k = metrics.get("iwae_k")
    # (row title, test NLL key, bits/dim key, train NLL key)
    rows = [
        (
            f"this weight{f' (IWAE bound, k = {int(k)})' if k else ' (exact)'}",
            "nll_nats",
            "nll_bpd",
            "train_nll_nats",
        ),
        ("this weight, negative ELBO", "nelbo_nats", "nelbo_bpd", "train_nelbo_nats"),
        (
            f"Bernoulli mixture, K = {int(metrics.get('mixture_k', 0))}",
            "mixture_nll_nats",
            "mixture_bpd",
            "mixture_train_nll_nats",
        ),
        (
            "independent Bernoulli per pixel",
            "bernoulli_nll_nats",
            "bernoulli_bpd",
            "bernoulli_train_nll_nats",
        ),
    ]
    lines = [
        "## Likelihood",
        "",
        "Negative log-likelihood of the binarized test digits (lower is better), beside baselines fitted on "
        "the same train digits:",
        "",
        "| model | test NLL (nats) | bits/dim | train NLL (nats) |",
        "|---|---|---|---|",
    ]
    for title, test, bpd, train in rows:
        if test in metrics:
            cells = (
                _num(metrics, test, "{:.2f}"),
                _num(metrics, bpd, "{:.4f}"),
                _num(metrics, train, "{:.2f}"),
            )
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def sample_quality_table(metrics: Mapping[str, Any]) -> list[str]:
    """Card lines: FID with the floor the metric has on real data, Inception Score, the digit shares and
    the memorisation check, in one row."""
    if "fid" not in metrics:
        return []
    head = ["FID", "real-data floor", "FID / floor", "IS (real digits)", "digit shares", "nn ratio"]
    row = [
        _num(metrics, "fid", "{:.2f}"),
        _num(metrics, "fid_floor", "{:.2f}"),
        _num(metrics, "fid_ratio", "{:.1f}"),
        _num(metrics, "inception_score", "{:.2f}")
        + (f" ({metrics['inception_score_real']:.2f})" if "inception_score_real" in metrics else ""),
        f"{metrics['share_min']:.1%} to {metrics['share_max']:.1%}" if "share_min" in metrics else "",
        _num(metrics, "nn_ratio", "{:.2f}"),
    ]
    for key, title in (("label_agreement", "requested digit"), ("cond_acc", "requested digit")):
        if key in metrics:
            head.append(title)
            row.append(f"{metrics[key]:.1%}")
    return [
        "## Sample quality",
        "",
        "FID in the feature space of the zoo's MNIST classifier, samples against the 1,000 test digits; its "
        "floor is the FID of 1,000 real train digits against the same test digits. Digit shares: the "
        "classifier's share of each digit among the samples (7% to 13% each is balanced). nn ratio: the "
        "median distance of a sample to its nearest training digit over the same for the test digits "
        "(below 1: samples sit closer to the training set than unseen digits do, i.e. memorised).",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
        "| " + " | ".join(row) + " |",
        "",
    ]


# ------------------------------------------------------------------------- models that score an image
def _scored(outputs: Mapping[str, np.ndarray], output_range: tuple[float, float]) -> list[dict[str, Any]]:
    """A likelihood model's outputs (``reconstruction`` and/or ``nll_bits_per_dim``) -> one dict per image:
    the reconstruction as an (H, W, C) uint8 image, the NLL in bits/dim and in nats per image."""
    recon = samples_to_uint8(outputs["reconstruction"], output_range) if "reconstruction" in outputs else None
    nll = np.asarray(outputs[NLL_OUTPUT], np.float64).reshape(-1) if NLL_OUTPUT in outputs else None
    batch = len(recon) if recon is not None else len(nll)  # type: ignore[arg-type]
    results: list[dict[str, Any]] = []
    for i in range(batch):
        item: dict[str, Any] = {}
        if recon is not None:
            item["reconstruction"] = recon[i]
        if nll is not None:
            item[NLL_OUTPUT] = float(nll[i])
            if recon is not None:  # dims of the image the NLL is over
                item["nll_nats"] = float(nll[i]) * recon[i].size * float(np.log(2.0))
        results.append(item)
    return results


def _describe_scored(result: Mapping[str, Any], source: str, out_dir: Path | None) -> str:
    parts = []
    if NLL_OUTPUT in result:
        nats = f", {result['nll_nats']:.1f} nats" if "nll_nats" in result else ""
        parts.append(f"NLL {result[NLL_OUTPUT]:.4f} bits/dim{nats}")
    if "reconstruction" in result:
        if out_dir is None:
            parts.append(f"reconstruction {result['reconstruction'].shape}")
        else:
            from zoo.tasks.draw import save_png

            stem = Path(source).stem
            parts.append(
                f"reconstruction -> {save_png(result['reconstruction'], Path(out_dir) / f'{stem}_reconstruction.png')}"
            )
    return f"{source}: {'; '.join(parts)}"
