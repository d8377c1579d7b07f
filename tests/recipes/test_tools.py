"""The training toolbox (`recipes.tools`): lr-find, doctor, search, snapshot ensembles, and their verbs.

Everything runs the `mlp_small.digits` preset (sklearn's 8x8 digits, a one-hidden-layer MLP) in fp32 for
one to three epochs of 21 steps, on one thread: tiny models run faster single-threaded on shared cores.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from recipes import tools
from recipes.config import apply_overrides
from recipes.engine import build_scheduler, get_preset
from zoo.cli import main
from zoo.errors import ConfigError

RECIPE = "mlp_small.digits"
TINY = ["precision=fp32", "progress=false", "tensorboard=false"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(*extra: str):
    return apply_overrides(get_preset(RECIPE).config, [*TINY, *extra])


def objective_class():
    return get_preset(RECIPE).objective


# ------------------------------------------------------------------------------------------- lr-find
def test_suggest_lr_finds_the_steepest_descent_and_falls_back_to_min_over_10():
    lrs = [10 ** (-6 + 6 * i / 99) for i in range(100)]
    # A loss that falls fastest (in log lr) at 1e-3 and blows up past 1e-1.
    losses = [2.0 - math.tanh(2 * (math.log10(lr) + 3)) + (50 * (lr - 0.1) if lr > 0.1 else 0) for lr in lrs]
    suggestion, method, min_lr, smoothed = tools.suggest_lr(lrs, losses, beta=0.5)
    assert method.startswith("steepest")
    assert 1e-3 / 2 < suggestion < 1e-3 * 2
    assert 0.02 < min_lr <= 0.2 and len(smoothed) == len(lrs)
    rising = [1.0 + i for i in range(len(lrs))]  # never descends: min/10, clamped to the range
    suggestion, method, min_lr, _ = tools.suggest_lr(lrs, rising)
    assert method.startswith("min/10") and "start the sweep lower" in method
    assert min_lr == lrs[0] and suggestion == lrs[0]


def test_lr_find_sweeps_plots_suggests_and_restores_the_trainer(tmp_path):
    trainer = tools.make_trainer(RECIPE, TINY).setup()
    batches = trainer.batches(0)
    for _ in range(2):  # give Adam some state, so restoring it means something
        trainer.train_batch(next(batches))
    models = copy.deepcopy({k: m.state_dict() for k, m in trainer.models.items()})
    optim = copy.deepcopy(trainer.optimizers["main"].state_dict())
    schedulers, rng = trainer.schedulers, torch.get_rng_state()

    result = tools.lr_find(trainer, start=1e-4, end=1.0, steps=40, out=tmp_path)

    assert len(result.lrs) >= 10 and all(a < b for a, b in zip(result.lrs, result.lrs[1:]))
    assert math.isfinite(result.suggestion) and 1e-4 <= result.suggestion <= 1.0
    assert result.method.startswith("steepest") and result.suggestion < result.min_loss_lr
    i = result.lrs.index(result.suggestion)  # the loss is already falling there
    assert result.smoothed[i] < result.smoothed[0] and min(result.losses) < result.losses[0] - 0.3
    assert result.plot == tmp_path / "lr_find.png" and result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert saved["suggestion"] == pytest.approx(result.suggestion)
    assert len((tmp_path / "lr_find.csv").read_text().splitlines()) == len(result.lrs) + 1

    for k, m in trainer.models.items():
        for name, tensor in m.state_dict().items():
            assert torch.equal(tensor, models[k][name]), name
    after = trainer.optimizers["main"].state_dict()
    assert [g["lr"] for g in after["param_groups"]] == [g["lr"] for g in optim["param_groups"]]
    for key, state in optim["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(after["state"][key][name]), torch.as_tensor(value)), name
    assert trainer.schedulers is schedulers and torch.equal(torch.get_rng_state(), rng)


def test_lr_find_verb_prints_the_suggestion(tmp_path, capsys):
    argv = [
        "lr-find",
        RECIPE,
        "--set",
        "precision=fp32",
        "--steps",
        "20",
        "--start",
        "1e-4",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "suggested lr:" in out and "--set optim.lr=" in out and (tmp_path / "lr_find.png").is_file()


# -------------------------------------------------------------------------------------------- doctor
def test_doctor_passes_a_healthy_preset_and_the_verb_exits_0(capsys):
    assert main(["doctor", RECIPE, "--set", "precision=fp32"]) == 0
    out = capsys.readouterr().out
    for name in ("initial loss", "gradient flow", "overfit two batches", "finite"):
        assert f"PASS  {name}" in out
    assert "label_smoothing=0.0" in out  # the preset's regulariser was switched off, and said so


def test_doctor_initial_loss_is_ln_num_classes():
    report = tools.doctor(RECIPE, TINY)
    check = report.check("initial loss")
    assert report.passed and check.status == "pass"
    assert check.values["expected"] == pytest.approx(math.log(10))
    assert abs(check.values["loss"] - math.log(10)) < 0.1 and check.values["logit_std"] < 1


def test_doctor_catches_logits_biased_at_init():
    class BiasedHead(objective_class()):
        def build(self, data):
            models = super().build(data)
            with torch.no_grad():  # a planted bug: a large, uneven bias in the classifier
                models["model"].head.bias.copy_(torch.linspace(-6, 6, 10))
            return models

    report = tools.doctor(BiasedHead(tiny_config()))
    assert not report.passed and report.check("initial loss").status == "fail"
    assert report.check("initial loss").values["loss"] > math.log(10) + 1
    assert report.check("gradient flow").status == "pass"
    assert "FAIL  initial loss" in str(report) and "initial loss" in str(report).splitlines()[-1]


def test_doctor_names_the_parameters_of_a_detached_layer(capsys):
    class Detached(objective_class()):
        def build(self, data):
            models = super().build(data)
            # A planted bug: the hidden layer's output is cut from the graph.
            models["model"].blocks[0].register_forward_hook(lambda _m, _i, out: out.detach())
            return models

    report = tools.doctor(Detached(tiny_config()), steps=20)
    check = report.check("gradient flow")
    assert check.status == "fail" and not report.passed
    assert sorted(check.values["no_grad"]) == ["model.blocks.0.fc.bias", "model.blocks.0.fc.weight"]
    assert "model.blocks.0.fc.weight" in check.message and "model.head" not in check.message


def test_doctor_catches_nan_and_a_model_that_cannot_overfit():
    class NaNOutput(objective_class()):
        def build(self, data):
            models = super().build(data)
            models["model"].head.register_forward_hook(lambda _m, _i, out: out * float("nan"))
            return models

    report = tools.doctor(NaNOutput(tiny_config()), steps=5)
    assert report.check("finite").status == "fail" and "loss at init" in report.check("finite").message
    assert report.check("overfit two batches").status == "fail"
    stuck = tools.doctor(RECIPE, TINY, steps=10, lr=1e-9)  # a rate that cannot move the loss
    assert [c.name for c in stuck.checks if c.status == "fail"] == ["overfit two batches"]


def test_doctor_skips_the_ln_c_check_for_autoencoding():
    report = tools.doctor("autoencoder.mnist", [*TINY, "batch_size=16", "model_args.widths=[4,8]"], steps=3)
    assert (
        report.check("initial loss").status == "skip"
        and "not a classifier" in report.check("initial loss").message
    )
    assert report.check("gradient flow").status == "pass" and report.check("finite").status == "pass"


def test_tools_give_the_engines_errors_for_bad_recipes_and_keys(capsys):
    assert main(["doctor", "mlp_smal.digits"]) == 2
    assert "unknown recipe 'mlp_smal.digits'" in capsys.readouterr().err
    assert main(["lr-find", RECIPE, "--set", "optim.lrr=0.1"]) == 2
    assert "unknown config key 'optim.lrr'" in capsys.readouterr().err
    assert main(["search", RECIPE, "--space", "optimizer=choice:sgd,adamx"]) == 2
    err = capsys.readouterr().err
    assert "'optim.name'" in err and "'adamw'" in err  # names the key and the allowed values


# -------------------------------------------------------------------------------------------- search
def test_parse_space_kinds_aliases_and_errors():
    specs = tools.parse_space(
        ["lr=log:1e-4:1e-1:4", "batch_size=choice:64,128", "epochs=int:1:3", "optimizer=choice:sgd,adamw"],
        tiny_config(),
    )
    by_key = {s.key: s for s in specs}
    assert list(by_key) == ["optim.lr", "batch_size", "epochs", "optim.name"]
    assert by_key["optim.lr"].grid()[0] == 1e-4 and by_key["optim.lr"].grid()[-1] == 1e-1
    assert len(by_key["optim.lr"].grid()) == 4 and by_key["optim.lr"].grid()[1] == pytest.approx(1e-3)
    assert by_key["batch_size"].grid() == [64, 128] and by_key["epochs"].grid() == [1, 2, 3]
    assert by_key["optim.name"].grid() == ["sgd", "adamw"]
    for bad in ("lr=logg:1:2", "lr=log:0:1", "lr=log:1e-2:1e-3", "lr", "lr=float:a:b"):
        with pytest.raises(ConfigError, match="--space"):
            tools.parse_space([bad], tiny_config())


def test_linear_scaling_rule_scales_lr_with_the_batch_per_step():
    base = tiny_config()  # batch 64, lr 3e-3
    assert tools.scale_lr_for_batch(
        apply_overrides(base, ["batch_size=128"]), base
    ).optim.lr == pytest.approx(6e-3)
    assert tools.scale_lr_for_batch(apply_overrides(base, ["batch_size=32"]), base).optim.lr == pytest.approx(
        1.5e-3
    )
    doubled = apply_overrides(base, ["batch_size=32", "accum_steps=4"])  # 128 samples per optimizer step
    assert tools.scale_lr_for_batch(doubled, base).optim.lr == pytest.approx(6e-3)


def test_random_search_runs_trials_and_saves_the_table(tmp_path):
    result = tools.search(
        RECIPE,
        ["lr=log:1e-3:1e-2"],
        [*TINY, "epochs=1"],
        trials=2,
        sampler="random",
        out=tmp_path,
        verbose=False,
    )
    assert [r["state"] for r in result.rows] == ["COMPLETE", "COMPLETE"]
    lrs = [r["overrides"]["optim.lr"] for r in result.rows]
    assert all(1e-3 <= lr <= 1e-2 for lr in lrs) and lrs[0] != lrs[1]
    assert all(0 <= r["value"] <= 1 and set(r["val_metrics"]) >= {"acc", "loss"} for r in result.rows)
    assert result.metric == "acc" and result.direction == "max"
    best = max(result.rows, key=lambda r: r["value"])
    assert result.best["number"] == best["trial"]
    assert f"--set optim.lr={json.dumps(best['overrides']['optim.lr'])}" in result.set_flags()
    csv_rows = (tmp_path / "search.csv").read_text().splitlines()
    assert csv_rows[0].startswith("trial,state,optim.lr,value") and len(csv_rows) == 3
    saved = json.loads((tmp_path / "search.json").read_text())
    assert saved["space"] == {"optim.lr": "log:0.001:0.01:3"} and saved["best"]["number"] == best["trial"]


def test_search_records_a_failed_trial_and_stops_on_an_unknown_metric():
    result = tools.search(
        RECIPE, ["batch_size=choice:64,5000"], [*TINY, "epochs=1"], sampler="grid", verbose=False
    )
    states = {r["overrides"]["batch_size"]: (r["state"], r["note"]) for r in result.rows}
    assert states[64][0] == "COMPLETE" and states[5000][0] == "FAIL" and "5000" in states[5000][1]
    assert result.best["overrides"] == {"batch_size": 64}
    with pytest.raises(ConfigError, match="'accuracy' is not a validation metric.*acc, loss, top5"):
        tools.search(
            RECIPE, ["lr=log:1e-3:1e-2"], [*TINY, "epochs=1"], trials=5, metric="accuracy", verbose=False
        )


def test_grid_search_verb_with_the_scaling_rule(tmp_path, capsys):
    argv = [
        "search",
        RECIPE,
        "--set",
        "precision=fp32",
        "--set",
        "epochs=1",
        "--space",
        "batch_size=choice:32,128",
    ]
    assert main([*argv, "--sampler", "grid", "--scale-lr", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "search.json").read_text())["trials"]
    lr_by_batch = {r["overrides"]["batch_size"]: r["overrides"]["optim.lr"] for r in rows}
    assert lr_by_batch == {32: pytest.approx(1.5e-3), 128: pytest.approx(6e-3)}  # preset: batch 64, lr 3e-3
    assert "zoo train mlp_small.digits --set precision=fp32 --set epochs=1 --set batch_size=" in out


def test_median_pruning_prunes_hopeless_trials():
    space = ["lr=log:1e-9:1e-8"]  # no learning happens at these rates
    args = dict(trials=2, sampler="random", baseline=True, prune_startup=1, verbose=False)
    pruned = tools.search(RECIPE, space, [*TINY, "epochs=2"], prune=True, **args)
    assert [r["state"] for r in pruned.rows] == ["COMPLETE", "PRUNED", "PRUNED"]
    assert pruned.rows[0]["note"].startswith("baseline") and pruned.rows[0]["overrides"]["optim.lr"] == 3e-3
    assert all(r["epochs"] == 1 and "pruned at validation 1" in r["note"] for r in pruned.rows[1:])
    assert pruned.best["number"] == 0
    unpruned = tools.search(RECIPE, space, [*TINY, "epochs=2"], prune=False, **args)
    assert [r["state"] for r in unpruned.rows] == ["COMPLETE"] * 3 and unpruned.rows[1]["epochs"] == 2


# ------------------------------------------------------------------------------------------ ensemble
def test_ensemble_module_averages_the_softmax():
    torch.manual_seed(0)
    members = [torch.nn.Linear(4, 3) for _ in range(3)]
    x = torch.randn(5, 4)
    out = tools.ensemble_module(members, "softmax")(x)
    expected = torch.stack([m(x).softmax(1) for m in members]).mean(0)
    assert torch.allclose(out.exp(), expected, atol=1e-6)
    mean = tools.ensemble_module(members, "mean")(x)
    assert torch.allclose(mean, torch.stack([m(x) for m in members]).mean(0))


def test_snapshot_ensemble_keeps_one_snapshot_per_cycle_and_measures_their_average(tmp_path):
    from zoo.weights import load_state_dict

    result = tools.snapshot_ensemble(RECIPE, [*TINY, "epochs=3"], snapshots=3, out=tmp_path)
    steps = [s["step"] for s in result.snapshots]
    assert len(steps) == 3 and steps == sorted(set(steps)) and steps[-1] <= 3 * 21
    assert all(s["lr"] < 0.05 * 3e-3 for s in result.snapshots)  # each taken at the bottom of its cycle
    # ... and right before the restart: the engine's schedule jumps back up after each snapshot step.
    config = apply_overrides(
        tiny_config("epochs=3"), {"schedule.name": "cosine_restarts", "schedule.cycles": 3}
    )
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=3e-3)
    sched = build_scheduler(opt, config.schedule, 3 * 21, 21)
    lrs = []
    for _ in range(3 * 21):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    for step in steps:
        assert lrs[step - 1] < lrs[step - 2] and (step == len(lrs) or lrs[step] > 10 * lrs[step - 1]), step
    assert result.mode == "softmax" and set(result.ensemble) >= {"acc", "loss"}
    assert all(0 <= s["metrics"]["acc"] <= 1 for s in result.snapshots) and 0 <= result.ensemble["acc"] <= 1
    states = [load_state_dict(tmp_path / "snapshots" / f"snapshot-{i}.safetensors") for i in (1, 2, 3)]
    assert not torch.equal(states[0]["head.weight"], states[1]["head.weight"])
    assert not torch.equal(states[1]["head.weight"], states[2]["head.weight"])
    saved = json.loads((tmp_path / "ensemble.json").read_text())
    assert saved["ensemble"]["acc"] == pytest.approx(result.ensemble["acc"]) and len(saved["snapshots"]) == 3
    assert "ensemble (average softmax of 3)" in result.summary()
    with pytest.raises(ConfigError, match="complete cycle"):
        tools.snapshot_ensemble(RECIPE, [*TINY, "epochs=1"], snapshots=40, out=tmp_path / "short")


def test_tools_use_only_the_engines_public_hooks():
    """No tool reaches into a private attribute (``trainer._x``, ``ctx._x``) or imports a private name."""
    import ast
    from pathlib import Path

    allowed = {"_DropoutNd", "_SubParsersAction"}  # torch's and argparse's, not the engine's
    for path in sorted(Path(tools.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Attribute):
                names = [node.attr]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("recipes"):
                names = [a.name for a in node.names]
            for name in names:
                private = name.startswith("_") and not name.startswith("__")
                assert not private or name in allowed, f"{path.name}:{node.lineno} uses {name}"
