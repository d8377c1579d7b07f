"""Pseudo-labelling as a loop (`Lee 2013 <https://www.researchgate.net/publication/280581078>`_, run as
self-training): a teacher trained on the labels alone labels the unlabelled images, its confident
predictions become labels, a student trains on the labels plus those pseudo-labels, the student becomes the
teacher, and so on for `rounds` rounds.

The rounds are equal slices of the run's steps (``rounds + 1`` of them: slice 0 trains the first teacher on
the labelled set alone); the preset's schedule is a cosine with one restart a slice, so each round's
student gets a whole cosine of its own. At the first step of round r >= 1 the model as it stands (round
r - 1's end) predicts every unlabelled train image (eval mode, no augmentation); those whose top class
probability reaches `threshold` keep it as their label for all of round r. Each step then trains on
``batch_size / unlabelled_ratio`` labelled images and ``batch_size`` pseudo-labelled ones (both drawn with
replacement by the run's generator, weakly augmented): ``L = L_s + mu L_u``, two cross-entropies.

The pseudo-labels and the per-round record live in a module of the run (`PseudoLabels`, named
``"pseudo"``), so a checkpoint holds them and a resumed run continues identically. The record (how many
pseudo-labels each round kept, how many of those were right, each round's test accuracy) is published as
the card's rounds table and figure: the true labels of the unlabelled images are read for that count only,
after the pseudo-labels are chosen, and never reach a loss (tests/recipes/test_pseudo_label.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

from recipes.augment import normalise
from recipes.engine import Context, Data, ScheduleConfig, register_preset
from recipes.semi_supervised import (
    SEMI_MNIST,
    SemiSupervisedConfig,
    SemiSupervisedObjective,
    unsupervised_weight,
)
from zoo.errors import ConfigError
from zoo.losses import cross_entropy

__all__ = [
    "PseudoLabelConfig",
    "PseudoLabelObjective",
    "PseudoLabels",
    "round_of_step",
    "select_pseudo_labels",
]

LEE_2013 = "https://www.researchgate.net/publication/280581078"


@dataclass
class PseudoLabelConfig(SemiSupervisedConfig):
    method: Literal["pseudo_label"] = "pseudo_label"
    # The teacher's top class probability that keeps its prediction as a label. 0.95 (FixMatch's) keeps
    # most of a 90%-accurate teacher's predictions and few of its mistakes (the card counts both).
    threshold: float = 0.95
    rounds: int = 4  # student rounds after the first teacher's: the steps split into rounds + 1 slices

    def validate(self) -> None:
        super().validate()
        if self.rounds < 1:
            raise ConfigError(f"config key 'rounds': {self.rounds} must be >= 1")
        s = self.schedule
        if s.name == "cosine_restarts" and s.cycles != self.rounds + 1:
            raise ConfigError(
                f"config key 'schedule.cycles': {s.cycles} cosine cycles for {self.rounds + 1} slices "
                "(rounds + 1): give each round its own cycle"
            )


def round_of_step(step: int, total_steps: int, rounds: int) -> int:
    """The round a step belongs to: ``rounds + 1`` equal slices of ``total_steps`` (slice 0 is the first
    teacher's); the remainder of the division joins the last round, as the restarting cosine's cycles
    start at multiples of the same slice length."""
    length = max(1, total_steps // (rounds + 1))
    return min(step // length, rounds)


def select_pseudo_labels(probabilities: torch.Tensor, threshold: float) -> torch.Tensor:
    """Each row's most probable class where its probability reaches `threshold`, else -1 (not kept)."""
    confidence, labels = probabilities.max(1)
    return torch.where(confidence >= threshold, labels, torch.full_like(labels, -1))


class PseudoLabels(nn.Module):
    """The pseudo-labels of the train images and the per-round record, as buffers (so checkpoints hold
    them). ``labels[i]`` is train image i's pseudo-label, -1 where none (the labelled images, and the
    unconfident); ``round`` the round they were made for (-1: none yet). Per round r: ``kept[r]`` and
    ``right[r]``, the pseudo-labels round r trained on and how many matched the true labels (a report,
    never trained on); ``test_acc[r]`` the test accuracy of the model that ended round r (NaN until
    measured); ``first_step[r]`` the step round r began at (-1: not reached)."""

    def __init__(self, num_images: int, num_rounds: int):
        super().__init__()
        self.register_buffer("labels", torch.full((num_images,), -1, dtype=torch.long))
        self.register_buffer("round", torch.tensor(-1, dtype=torch.long))
        self.register_buffer("kept", torch.zeros(num_rounds, dtype=torch.long))
        self.register_buffer("right", torch.zeros(num_rounds, dtype=torch.long))
        self.register_buffer("test_acc", torch.full((num_rounds,), float("nan")))
        self.register_buffer("first_step", torch.full((num_rounds,), -1, dtype=torch.long))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.labels[rows]


class PseudoLabelObjective(SemiSupervisedObjective):
    name = "pseudo_label"
    Config = PseudoLabelConfig
    config: PseudoLabelConfig

    def method_papers(self) -> list[str]:
        return [LEE_2013]

    def data(self) -> Data:
        data = super().data()
        keep = torch.ones(len(self.splits.train), dtype=torch.bool)
        keep[self.labelled] = False
        self.unlabelled = keep.nonzero().flatten()  # the rows that get pseudo-labels (not the labelled ones)
        return data

    def build(self, data: Data) -> dict[str, nn.Module]:
        models = super().build(data)
        models["pseudo"] = PseudoLabels(len(self.splits.train), self.config.rounds + 1)
        models["pseudo"].first_step[0] = 0
        # The same module the run trains and checkpoints (moving it to the device keeps it): publish reads it.
        self.pseudo_state = models["pseudo"]
        return models

    @torch.no_grad()
    def probabilities(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities of uint8 `images` (unaugmented, fp32, eval mode; the mode is restored)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        out = []
        for chunk in images.split(500):
            x = normalise(chunk.to(device).float().div_(255), self.splits.mean, self.splits.std)
            out.append(model(x).float().softmax(1))
        model.train(was_training)
        return torch.cat(out)

    def test_accuracy(self, model: nn.Module) -> float:
        """`model`'s accuracy on the test split (reported per round; nothing is chosen by it)."""
        test = self.splits.test
        predicted = self.probabilities(model, test.images).argmax(1).cpu()
        return (predicted == test.labels).float().mean().item()

    @torch.no_grad()
    def relabel(self, ctx: Context, round_: int) -> None:
        """Start round `round_`: the model as it stands becomes the teacher; its confident predictions on the
        unlabelled images are the pseudo-labels of this round (and its test accuracy ends the last)."""
        model, state = ctx.unwrap("model"), ctx.unwrap("pseudo")
        train = self.splits.train
        chosen = select_pseudo_labels(
            self.probabilities(model, train.images[self.unlabelled]), self.config.threshold
        ).to(state.labels.device)
        state.labels.fill_(-1)
        state.labels[self.unlabelled.to(state.labels.device)] = chosen
        state.round.fill_(round_)
        state.first_step[round_] = ctx.step
        # The report only: the true labels are compared after the choice, into a count.
        kept = chosen >= 0
        truth = train.labels[self.unlabelled].to(chosen.device)
        state.kept[round_] = kept.sum()
        state.right[round_] = (kept & (chosen == truth)).sum()
        state.test_acc[round_ - 1] = self.test_accuracy(model)

    def pseudo_batch(self, ctx: Context) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A step's pseudo-labelled images and their pseudo-labels, drawn with replacement by the run's
        generator; None when the round kept none."""
        state = ctx.unwrap("pseudo")
        rows = (state.labels >= 0).nonzero().flatten()
        if len(rows) == 0:
            return None
        g = ctx.generator
        pick = rows[torch.randint(len(rows), (self.config.batch_size,), generator=g, device=g.device)]
        return self.splits.train.images[pick.cpu()], state.labels[pick]

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        # The loader's batch (unlabelled images and their true labels) is not used: the pseudo-labelled
        # images are drawn from the round's kept set instead.
        c = self.config
        round_ = round_of_step(ctx.step, ctx.total_steps, c.rounds)
        if round_ > int(ctx.unwrap("pseudo").round) and round_ > 0:
            self.relabel(ctx, round_)
        images, labels = self.labelled_batch(ctx)
        y = labels.to(ctx.device)
        x = self.inputs(ctx, images, train=True)
        pseudo = self.pseudo_batch(ctx) if round_ > 0 else None
        if pseudo is not None:
            x = torch.cat([x, self.inputs(ctx, pseudo[0], train=True)])
        with ctx.autocast():
            out = ctx.models["model"](x).float()
        logits = out[: len(y)]
        supervised = cross_entropy(logits, y, label_smoothing=c.label_smoothing)
        unsup = torch.zeros((), device=ctx.device)
        if pseudo is not None:
            unsup = cross_entropy(out[len(y) :], pseudo[1].to(ctx.device), label_smoothing=c.label_smoothing)
        mu = unsupervised_weight(ctx.progress, c.unsup_weight, c.rampup)
        loss = supervised + mu * unsup
        ctx.optimize(loss)
        return {
            "loss": loss.detach(),
            "loss_s": supervised.detach(),
            "loss_u": unsup.detach(),
            "round": torch.tensor(float(round_)),
            "acc": (logits.detach().argmax(1) == y).float().mean(),
        }

    def rounds_record(self, state: PseudoLabels, final_acc: float) -> list[dict[str, Any]]:
        """One row per round: its steps, the pseudo-labels it trained on (kept, right, precision) and the
        test accuracy of the model that ended it (`final_acc` for the last, measured at publish)."""
        rows = []
        reached = [r for r in range(self.config.rounds + 1) if int(state.first_step[r]) >= 0]
        for r in reached:
            kept, right = int(state.kept[r]), int(state.right[r])
            acc = final_acc if r == reached[-1] else float(state.test_acc[r])
            rows.append(
                {
                    "round": r,
                    "model": "teacher on the labels only" if r == 0 else f"student {r}",
                    "first step": int(state.first_step[r]),
                    "pseudo-labels": kept if r else "-",
                    "right": right if r else "-",
                    "precision": f"{right / kept:.1%}" if r and kept else "-",
                    "test accuracy": f"{acc:.1%}" if acc == acc else "-",  # NaN: the run stopped sooner
                    "test error": f"{1 - acc:.1%}" if acc == acc else "-",
                }
            )
        return rows

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        c = self.config
        published, meta = super().publish(model, data)
        # The last row is this weight, measured here as the engine then measures it (the same test images).
        rows = self.rounds_record(self.pseudo_state, self.test_accuracy(published))
        meta["tables"] = [
            {
                "title": "Pseudo-labelling rounds",
                "intro": (
                    f"Each round's model on the {len(self.splits.test):,} test images, and the pseudo-labels "
                    f"it trained on: the unlabelled images its teacher (the previous round's model) predicted "
                    f"with probability >= {c.threshold}, and how many of those were right (counted from the "
                    "true labels after the choice; they are never trained on). The last round is this weight."
                ),
                "rows": rows,
            }
        ]
        path = self.picture_path("rounds.png")
        draw_rounds(rows, len(self.unlabelled), path)
        meta["files"] = {"rounds": str(path)}
        return published, meta


def draw_rounds(rows: list[dict[str, Any]], unlabelled: int, path: Any) -> None:
    """Test error by round (left) and the pseudo-labels each round kept and got right (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2, 1)
    measured = [(r["round"], float(r["test error"].rstrip("%"))) for r in rows if r["test error"] != "-"]
    if measured:
        ax.plot(*zip(*measured), "o-")
    ax.set(xlabel="round (0: teacher on the labels only)", ylabel="test error (%)", title="test error")
    ax.set_xticks([r["round"] for r in rows])
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(1, 2, 2)
    students = [r for r in rows if r["round"] > 0]
    xs = [r["round"] for r in students]
    ax.bar(xs, [r["pseudo-labels"] for r in students], color="tab:orange", label="kept")
    ax.bar(xs, [r["right"] for r in students], color="tab:green", label="of which right")
    ax.axhline(unlabelled, color="grey", ls="--", lw=1, label=f"{unlabelled:,} unlabelled")
    ax.set(xlabel="round", ylabel="pseudo-labels", title="pseudo-labels trained on")
    ax.set_xticks(xs)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


# ------------------------------------------------------------------------------------------------ presets
# The semi-supervised budget (40 epochs = 1,640 steps, batch 32 labelled + 96 pseudo-labelled, SGD 0.03):
# 4 student rounds after the teacher, 328 steps and one cosine cycle each.
PSEUDO_MNIST = PseudoLabelConfig(
    **{k: v for k, v in vars(SEMI_MNIST).items() if k not in ("method", "threshold", "schedule")},
    rounds=4,
    threshold=0.95,
    schedule=ScheduleConfig(name="cosine_restarts", warmup=0.0, cycles=5),
)
register_preset(
    "cnn.mnist100_pseudolabel",
    PseudoLabelObjective,
    PSEUDO_MNIST,
    "pseudo-labelling on 10 labels per digit + 3,900 unlabelled: 4 rounds of teacher -> confident labels "
    "(>= 0.95) -> student",
)
# The 3 draws of the 100 labels (as the baseline's and FixMatch's).
for _draw in (1, 2):
    register_preset(
        f"cnn.mnist100_pseudolabel_draw{_draw}",
        PseudoLabelObjective,
        replace(PSEUDO_MNIST, label_draw=_draw),
        f"cnn.mnist100_pseudolabel on label draw {_draw}",
    )
