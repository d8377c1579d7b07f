"""Tracking emerges by colorizing videos (Vondrick et al. 2018): self-supervision from colour, on digit videos.

The network (`zoo.models.video_colorization.PixelEmbedder`) sees grey frames of the synthetic digit videos
(`zoo.data.videos`: coloured digits moving over textured backgrounds, occluding each other) and embeds
every pixel. Each step draws, per video, a reference frame and a target frame `gap` frames later (1 ..
`max_gap`) and trains the target's colours to be copied from the reference's through the embeddings'
attention (`zoo.losses.colorization_copy_loss`). Colours are quantised as in the paper: k-means
(`num_colours` clusters) of the Lab colour's (a, b) channels, fitted on the train videos' pixels at the
embedding's resolution (each cell's colour is its pixels' mean). Training reads no label, mask or track.

Evaluation, with no fine-tuning: the first frame's instance masks are propagated through each test video by
the same attention (`zoo.tasks.mask_propagation`), scored by `zoo.metrics.PropagatedMaskIoU` against the
generator's ground truth. The attention's temperature and top-k at test time are picked on the masks of
TUNING_VIDEOS train videos (never the test's), as the probes of `zoo.probing` are fitted on train labels.
At publish the same score is measured for three baselines on the same videos, each tuned the same way:
copying the first frame's masks unchanged, propagation on raw pixels (`raw_pixel_embeddings`), and the same
network with random weights. The card shows the table, the IoU by frame, and a test video propagated
(colours and masks).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from recipes.augment import normalise
from recipes.classification import family_papers, optimizer_papers
from recipes.engine import (
    Context,
    Data,
    Objective,
    ObjectiveConfig,
    OptimizerConfig,
    ScheduleConfig,
    register_preset,
)
from zoo.data import load_dataset
from zoo.errors import ConfigError
from zoo.losses import COLORIZATION_PAPER, colorization_copy_loss
from zoo.tasks.mask_propagation import (
    DEFAULT_PROPAGATION,
    copy_first_frame,
    propagate_masks,
    raw_pixel_embeddings,
)

__all__ = ["ColourQuantizer", "VideoColorizationConfig", "VideoColorizationObjective"]

# Propagation is tuned on train videos (never the test's), as the probes of `zoo.probing` are fitted on train
# features: the copy attention's temperature and top-k giving the best mask IoU on TUNING_VIDEOS train videos,
# for the network (at each evaluation) and for each baseline, from its own grid.
TUNING_VIDEOS = 20
NETWORK_GRID = {"temperature": (1.0, 0.5, 0.25, 0.1), "topk": (0, 10)}  # 1, 0: the training attention
RAW_GRID = {
    "temperature": (0.003, 0.01, 0.03, 0.1, 0.3),
    "topk": (0, 10),
}  # unit-length 3x3 patches are flatter


@dataclass
class VideoColorizationConfig(ObjectiveConfig):
    model: str = "colorization_tracker"
    dataset: str = "digit_videos"
    num_colours: int = 16  # k-means clusters of the Lab (a, b) colour: the classes the copy is scored on
    colour_pixels: int = 200_000  # train pixels (embedding cells) k-means is fitted on
    max_gap: int = 4  # the target frame is 1 .. max_gap frames after the reference
    temperature: float = 1.0  # the training copy attention's softmax temperature (1: the paper's formula)
    previous: int = 1  # propagation at evaluation: the previous frames used as references besides the first
    eval_videos: int = 0  # test videos evaluated (0: all)

    def validate(self) -> None:
        super().validate()
        if self.num_colours < 2:
            raise ConfigError(f"config key 'num_colours': {self.num_colours} must be >= 2")
        if self.max_gap < 1:
            raise ConfigError(f"config key 'max_gap': {self.max_gap} must be >= 1")
        if not self.temperature > 0:
            raise ConfigError(f"config key 'temperature': {self.temperature} must be > 0")
        if self.previous < 0 or self.eval_videos < 0:
            raise ConfigError("config keys 'previous' and 'eval_videos' must be >= 0")


class ColourQuantizer:
    """Lab (a, b) colour bins: k-means centres fitted on RGB pixels, nearest centre for new ones."""

    def __init__(self, centres: np.ndarray):
        self.centres = np.asarray(centres, np.float32)  # (K, 2) a, b

    @classmethod
    def fit(cls, rgb: np.ndarray, clusters: int, seed: int = 0) -> ColourQuantizer:
        """Fit on (M, 3) RGB values in [0, 1]."""
        from sklearn.cluster import KMeans

        ab = _lab_ab(rgb)
        kmeans = KMeans(n_clusters=clusters, n_init=1, random_state=seed).fit(ab)
        return cls(kmeans.cluster_centers_)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """(..., 3) RGB in [0, 1] -> (...) uint8 bin of the nearest centre."""
        flat = rgb.reshape(-1, 3)
        bins = np.empty(len(flat), np.uint8)
        for start in range(0, len(flat), 1 << 20):
            ab = _lab_ab(flat[start : start + (1 << 20)])
            distance = ((ab[:, None, :] - self.centres[None]) ** 2).sum(-1)
            bins[start : start + len(ab)] = distance.argmin(1)
        return bins.reshape(rgb.shape[:-1])


def _lab_ab(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(rgb, np.float32).reshape(-1, 1, 3))[:, 0, 1:].astype(np.float32)


def _cell_colours(frames: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """uint8 frames (..., 3, H, W) -> each embedding cell's mean RGB in [0, 1], (..., h, w, 3)."""
    flat = frames.reshape(-1, *frames.shape[-3:])
    cells = [
        nn.functional.adaptive_avg_pool2d(chunk.float().div_(255), size).permute(0, 2, 3, 1)
        for chunk in flat.split(4096)
    ]
    return torch.cat(cells).reshape(*frames.shape[:-3], *size, 3).numpy()


def _first(videos: Any, count: int) -> Any:
    """The first `count` videos of a `zoo.data.videos.DigitVideos` split (all of them for 0)."""
    if not count or count >= len(videos):
        return videos
    return type(videos)(videos.split, count, videos.config, videos.seed, videos.start)


class GreyVideos(torch.utils.data.Dataset):
    """Videos as the network sees them, in memory: grey frames uint8 (N, T, 1, H, W) and a per-frame target
    (N, T, ...): colour bins to train on, or instance maps to evaluate against."""

    def __init__(self, grey: torch.Tensor, targets: torch.Tensor):
        self.grey, self.targets = grey, targets

    def __len__(self) -> int:
        return len(self.grey)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.grey[i], self.targets[i].long()

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.grey[indices], self.targets[indices].long()


class _LazyVideos(torch.utils.data.Dataset):
    """A `GreyVideos` of known length, built by `build` at its first item (see `VideoColorizationObjective.data`)."""

    def __init__(self, count: int, build: Any):
        self.count, self.build = count, build

    def __len__(self) -> int:
        return self.count

    @functools.cached_property
    def videos(self) -> GreyVideos:
        return self.build()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.videos[i]

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.videos.get_batch(indices)


def _grey(frames: torch.Tensor) -> torch.Tensor:
    """uint8 RGB videos (N, T, 3, H, W) -> grey uint8 (N, T, 1, H, W)."""
    from zoo.data.videos import grey_frames

    return torch.from_numpy(grey_frames(frames.permute(0, 1, 3, 4, 2).numpy())).unsqueeze(2)


class VideoColorizationObjective(Objective):
    name = "video_colorization"
    Config = VideoColorizationConfig
    config: VideoColorizationConfig

    def data(self) -> Data:
        c = self.config
        self.splits = load_dataset(c.dataset)
        self.frames = int(self.splits.extra["frames"])
        # A smoke run (eval_limit) renders, trains and evaluates on that many videos of each split only.
        test = _first(self.splits.test, c.eval_videos or c.eval_limit).to_memory()
        self.test_videos = test
        # The embedding grid the model gives these frames (its stride): the colour bins live on it.
        probe = self._probe_model()
        height, width = test.frames.shape[-2:]
        with torch.no_grad():
            self.grid = tuple(probe(torch.zeros(1, 1, height, width)).shape[-2:])
        self.stride = int(probe.stride)
        info = {
            "labels": self.splits.labels,
            "input_size": self.splits.input_size,
            "mean": self.splits.mean,
            "std": self.splits.std,
        }
        # The train videos (2,000 by default) are rendered and colour-quantised on first use only: an
        # evaluation (`zoo verify`, re-measuring a published weight) reads the test videos and the
        # TUNING_VIDEOS train ones (`tuning_videos`), never the training set.
        train = _first(self.splits.train, c.eval_limit and max(c.eval_limit, c.batch_size))
        return Data(
            _LazyVideos(len(train), lambda: self._train_videos(train)),
            None,
            GreyVideos(_grey(test.frames), test.instances),
            self.splits.name,
            self.splits.split,
            info,
        )

    def _train_videos(self, videos: Any) -> GreyVideos:
        """The train videos in memory, grey, with each embedding cell's colour bin (k-means fitted here)."""
        c = self.config
        train = videos.to_memory()
        colours = _cell_colours(train.frames, self.grid)  # (N, T, h, w, 3)
        pixels = colours.reshape(-1, 3)
        pick = np.random.default_rng(c.seed).choice(
            len(pixels), min(c.colour_pixels, len(pixels)), replace=False
        )
        self.quantizer = ColourQuantizer.fit(pixels[pick], c.num_colours, c.seed)
        bins = torch.from_numpy(self.quantizer(colours))
        return GreyVideos(_grey(train.frames), bins)

    def _probe_model(self) -> nn.Module:
        from zoo.factory import create_model

        return create_model(self.config.model, **self.config.model_args).eval()

    def build(self, data: Data) -> dict[str, nn.Module]:
        from zoo.factory import create_model

        c = self.config
        channels, height, _ = data.info["input_size"]
        model = create_model(c.model, in_chans=channels, img_size=height, **c.model_args)
        if not hasattr(model, "embed_dim") or model.output_names != ("embeddings",):
            raise ConfigError(
                f"'{c.model}' is not a per-pixel embedder (see zoo list --task mask-propagation)"
            )
        return {"model": model}

    def metrics(self, split: str) -> dict[str, Any]:
        from zoo.metrics import PropagatedMaskIoU

        # The propagation is tuned for the evaluated network at its first batch (`eval_step`).
        return {"propagation": PropagatedMaskIoU(self.frames, None)}

    def _propagator(self, **propagation: Any) -> Any:
        return functools.partial(propagate_masks, stride=self.stride, **propagation)

    @functools.cached_property
    def tuning_videos(self) -> tuple[torch.Tensor, np.ndarray]:
        """The first TUNING_VIDEOS train videos (a smoke run's eval_limit fewer): grey uint8 (N, T, 1, H, W)
        and instance maps (N, T, H, W), the only masks the recipe reads besides the test split's."""
        from zoo.data.videos import grey_frames

        # A smoke run (eval_limit) only checks that tuning runs: 2 videos.
        count = min(TUNING_VIDEOS, len(self.splits.train), 2 if self.config.eval_limit else TUNING_VIDEOS)
        videos = [self.splits.train.video(i) for i in range(count)]
        grey = torch.from_numpy(np.stack([grey_frames(v.frames) for v in videos])).unsqueeze(2)
        return grey, np.stack([v.instances for v in videos])

    def tune(self, embeddings: np.ndarray, grid: dict[str, tuple]) -> dict[str, Any]:
        """The propagation (`grid`'s best temperature and top-k on the tuning videos' `embeddings`)."""
        _, truth = self.tuning_videos
        options = [
            {**DEFAULT_PROPAGATION, "temperature": t, "topk": k, "previous": self.config.previous}
            for t in grid["temperature"]
            for k in grid["topk"]
        ]
        scores = [self._score(embeddings, truth, o).compute()["propagation_iou"] for o in options]
        return options[int(np.argmax(scores))]

    def _inputs(self, ctx: Context, grey: torch.Tensor) -> torch.Tensor:
        return normalise(ctx.to_device(grey).float().div_(255), self.splits.mean, self.splits.std)

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        c = self.config
        grey, bins = batch  # (B, T, 1, H, W) uint8, (B, T, h, w) colour bins
        n, frames = grey.shape[:2]
        g = ctx.generator
        gap = torch.randint(1, min(c.max_gap, frames - 1) + 1, (n,), generator=g, device=g.device).cpu()
        ref = (torch.rand(n, generator=g, device=g.device).cpu() * (frames - gap)).long()
        tgt = ref + gap
        rows = torch.arange(n)
        x = self._inputs(ctx, torch.cat([grey[rows, ref], grey[rows, tgt]]))
        with ctx.autocast():
            embeddings = ctx.models["model"](x)
        loss = colorization_copy_loss(
            embeddings[:n],
            embeddings[n:],
            ctx.to_device(bins[rows, ref]),
            ctx.to_device(bins[rows, tgt]),
            c.num_colours,
            c.temperature,
        )
        ctx.optimize(loss)
        return {"loss": loss.detach(), "gap": gap.float().mean()}

    @torch.no_grad()
    def eval_step(self, ctx: Context, batch: Any) -> None:
        model = ctx.models["model"]  # the evaluated network (published copy, EMA...) in eval mode
        metric = ctx.metrics["propagation"]
        if metric.propagate is None:  # an evaluation's first batch: tune the propagation for this network
            self.eval_propagation = self.tune(self.embed_videos(model, self.tuning_videos[0]), NETWORK_GRID)
            metric.propagate = self._propagator(**self.eval_propagation)
        grey, instances = batch  # (B, T, 1, H, W) uint8, (B, T, H, W)
        embeddings = model(self._inputs(ctx, grey.flatten(0, 1))).float()
        metric.update(embeddings, instances.flatten(0, 1))

    def embed_videos(self, model: nn.Module, grey: torch.Tensor) -> np.ndarray:
        """(N, T, 1, H, W) uint8 grey videos -> embeddings (N, T, D, h, w) of `model` (eval mode)."""
        device = next(model.parameters()).device
        with torch.no_grad():
            out = [
                model(normalise(v.to(device).float().div_(255), self.splits.mean, self.splits.std))
                .float()
                .cpu()
                for v in grey
            ]
        return torch.stack(out).numpy()

    # ------------------------------------------------------------------------------------------ publish
    def _score(self, embeddings: np.ndarray, instances: np.ndarray, propagation: dict[str, Any]) -> Any:
        from zoo.metrics import PropagatedMaskIoU

        metric = PropagatedMaskIoU(self.frames, self._propagator(**propagation))
        for video, truth in zip(embeddings, instances):
            metric.update(video, truth)
        return metric

    def _raw_embeddings(self, grey: torch.Tensor) -> np.ndarray:
        frames = grey[:, :, 0].float().div(255).numpy()
        return np.stack([raw_pixel_embeddings(v, self.stride) for v in frames])

    def baselines(self, data: Data) -> dict[str, Any]:
        """The baselines' metric objects on the test videos, each propagation tuned on the train videos as
        the network's is: copy the first frame, raw pixels, the same network with random weights."""
        from zoo.factory import create_model
        from zoo.metrics import PropagatedMaskIoU

        test_grey, test_truth = data.test.grey, data.test.targets.numpy()
        copy_metric = PropagatedMaskIoU(self.frames, None)
        for truth in test_truth:
            copy_metric.add_video(copy_first_frame(truth), truth)
        raw = self.tune(self._raw_embeddings(self.tuning_videos[0]), RAW_GRID)
        torch.manual_seed(self.config.seed)
        channels, height, _ = data.info["input_size"]
        random_init = create_model(
            self.config.model, in_chans=channels, img_size=height, **self.config.model_args
        )
        random_init.eval()
        random = self.tune(self.embed_videos(random_init, self.tuning_videos[0]), NETWORK_GRID)
        return {
            "copy the first frame": copy_metric,
            f"raw pixels (3x3 patches, {_describe(raw)})": self._score(
                self._raw_embeddings(test_grey), test_truth, raw
            ),
            f"random-init network ({_describe(random)})": self._score(
                self.embed_videos(random_init, test_grey), test_truth, random
            ),
        }

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        c = self.config
        model = copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format)
        papers = [COLORIZATION_PAPER, *family_papers(model), *optimizer_papers(c)]
        propagation = self.tune(self.embed_videos(model, self.tuning_videos[0]), NETWORK_GRID)
        embeddings = self.embed_videos(model, data.test.grey)
        own = self._score(embeddings, data.test.targets.numpy(), propagation)
        baselines = self.baselines(data)
        meta: dict[str, Any] = {
            "task": "mask-propagation",
            "input_size": list(data.info["input_size"]),
            "mean": list(data.info["mean"]),
            "std": list(data.info["std"]),
            "papers": list(dict.fromkeys(papers)),
            "embed_stride": self.stride,
            "video_frames": self.frames,
            "propagation": propagation,
            "baselines": {name: metric.compute() for name, metric in baselines.items()},
            "description": (
                f"{c.model}: {model.embed_dim}-d embeddings every {self.stride} px of grey {data.name} frames, "
                f"trained by copying quantised colours ({c.num_colours} Lab bins) from a frame up to "
                f"{c.max_gap} frames earlier, on {len(data.train)} train videos with no labels. Evaluated by "
                f"propagating the first frame's instance masks through {len(data.test)} test videos with the "
                f"same attention ({_describe(propagation)}, picked on {len(self.tuning_videos[1])} train videos; "
                "the training attention is temperature 1, every reference). The propagation picture's rows: "
                "the test video, the grey frames the network sees, the first frame's colours copied forward, "
                "the propagated masks, the ground truth."
            ),
        }
        curves = {"this weight": own.per_frame(), **{k: m.per_frame() for k, m in baselines.items()}}
        path = self.picture_path("iou_by_frame.png")
        draw_iou_by_frame(curves, path, f"{c.model} on {data.name}: propagated mask IoU")
        strip = self.picture_path("propagation.png")
        self.draw_propagation(embeddings[0], 0, strip, propagation)
        meta["files"] = {"propagation": str(strip), "iou_by_frame": str(path)}
        return model, meta

    def draw_propagation(
        self, embeddings: np.ndarray, index: int, path: Any, propagation: dict[str, Any]
    ) -> None:
        """One test video: its frames, the grey frames the network sees, the first frame's colours copied
        forward, the propagated masks and the ground truth."""
        from PIL import Image

        from zoo.tasks.draw import overlay_instances, video_strip
        from zoo.tasks.mask_propagation import propagate_labels, upsample_labels

        frames = self.test_videos.frames[index].permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
        truth = self.test_videos.instances[index].numpy()
        first_rgb = _cell_colours(self.test_videos.frames[index][:1], self.grid)[0]  # (h, w, 3)
        colours = np.moveaxis(first_rgb, -1, 0)
        copied = upsample_labels(propagate_labels(embeddings, colours, **propagation), frames.shape[1:3])
        colourised = (np.clip(np.moveaxis(copied, 1, -1), 0, 1) * 255).round().astype(np.uint8)
        masks = propagate_masks(embeddings, truth[0], self.stride, **propagation)
        from zoo.data.videos import grey_frames

        rows = [
            frames,
            grey_frames(frames),
            colourised,
            overlay_instances(frames, masks),
            overlay_instances(frames, truth),
        ]
        every = max(1, self.frames // 6)
        Image.fromarray(video_strip(rows, every=every, scale=3)).save(path)


def _describe(propagation: dict[str, Any]) -> str:
    topk = propagation["topk"]
    return f"temperature {propagation['temperature']}, " + (f"top {topk}" if topk else "every reference")


def draw_iou_by_frame(curves: dict[str, list[float]], path: Any, title: str) -> None:
    """Propagated mask IoU against the frame index, one line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, values in curves.items():
        ax.plot(range(1, len(values)), values[1:], marker="o", label=name)
    ax.set_xlabel("frame (the first frame's masks are given)")
    ax.set_ylabel("mean IoU")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


# ------------------------------------------------------------------------------------------------ presets
register_preset(
    "colorization_tracker.videos",
    VideoColorizationObjective,
    VideoColorizationConfig(
        epochs=12,
        batch_size=16,
        precision="auto",
        channels_last=False,
        eval_every=0,
        optim=OptimizerConfig(name="adamw", lr=1e-3, weight_decay=1e-4),
        schedule=ScheduleConfig(name="cosine", warmup=0.05),
    ),
    "tracking by colorizing (Vondrick 2018) on 2,000 digit videos: copy quantised colours across 1-4 frames",
)
