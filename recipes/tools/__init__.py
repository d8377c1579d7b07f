"""The training toolbox: LR range test, babysitting checks, hyper-parameter search, snapshot ensembles.

Four verbs on top of the one training loop (`recipes.engine`), each also a function, each in its module:

- ``zoo lr-find RECIPE`` / `lr_find` (`recipes.tools.lr_finder`): the learning-rate range test (Smith,
  https://arxiv.org/abs/1506.01186, section 3.3), run on a live `Trainer` inside ``trainer.preserved()``;
  it writes a PNG and suggests a rate;
- ``zoo doctor RECIPE`` / `doctor` (`recipes.tools.checks`): initial loss ln(C) for a classifier, gradient
  flow to every optimized parameter (``trainer.backward_only()``), finite losses, gradients and weights,
  and overfitting two batches; the verb exits 1 on a failure;
- ``zoo search RECIPE --space KEY=SPEC ...`` / `search` (`recipes.tools.hpsearch`): grid, random or TPE
  search with Optuna, trials ranked on a validation metric (the test split is never seen), median
  pruning, the linear scaling rule;
- ``zoo ensemble RECIPE --snapshots N`` / `snapshot_ensemble` (`recipes.tools.ensemble`): one run with N
  cosine cycles, a snapshot at the end of each, each snapshot and their averaged prediction measured.

The tools use only the engine's public hooks (see `recipes.engine`); their shared plumbing is in
`recipes.tools.common` and the verbs in `recipes.tools.cli`. (The modules are not named after the
functions, so that ``recipes.tools.doctor`` is the function and never shadows a module.)

Importing this package is cheap (the `zoo` command line imports it to add its verbs): torch, optuna and
matplotlib are imported by the functions that use them.
"""

from __future__ import annotations

from recipes.tools.checks import Check, DoctorReport, doctor
from recipes.tools.cli import add_commands
from recipes.tools.common import make_trainer
from recipes.tools.ensemble import (
    EnsembleResult,
    cycle_ends,
    ensemble_module,
    schedule_lrs,
    snapshot_callback,
    snapshot_ensemble,
)
from recipes.tools.hpsearch import (
    ALIASES,
    SPEC_KINDS,
    SearchResult,
    Spec,
    parse_space,
    pruning_callback,
    scale_lr_for_batch,
    search,
)
from recipes.tools.lr_finder import LRFindResult, lr_find, smooth_losses, suggest_lr

__all__ = [
    "ALIASES",
    "SPEC_KINDS",
    "Check",
    "DoctorReport",
    "EnsembleResult",
    "LRFindResult",
    "SearchResult",
    "Spec",
    "add_commands",
    "cycle_ends",
    "doctor",
    "ensemble_module",
    "lr_find",
    "make_trainer",
    "parse_space",
    "pruning_callback",
    "scale_lr_for_batch",
    "schedule_lrs",
    "search",
    "smooth_losses",
    "snapshot_callback",
    "snapshot_ensemble",
    "suggest_lr",
]
