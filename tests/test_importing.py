"""`zoo import` / `zoo.import_weights`: torchvision and timm checkpoints, saved exactly as each library's cache
stores them (random weights, resnet18, small inputs), become zoo weights whose outputs equal the source's."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import zoo
from zoo.cli import main
from zoo.errors import ConfigError, IncompatibleKeysError, WeightsError
from zoo.importing import imagenet_labels, read_checkpoint

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")


def _torchvision_cache_file(folder, model, arch="resnet18", prefix_len=8):
    """The state dict saved as torchvision's cache names it: ``ARCH-<sha256 prefix>.pth``."""
    tmp = folder / "download.tmp"
    torch.save(model.state_dict(), tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / f"{arch}-{sha[:prefix_len]}.pth"
    tmp.rename(path)
    return path


@pytest.fixture(scope="module")
def inputs():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def tv_model():
    torch.manual_seed(1)
    model = torchvision.models.resnet18()
    # Non-trivial BatchNorm statistics, so eval-mode parity covers the running buffers too.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def timm_folder(tmp_path):
    """timm's Hugging Face layout (config.json + model.safetensors), written by timm itself."""
    torch.manual_seed(2)
    model = timm.create_model("resnet18", pretrained=False).eval()
    folder = tmp_path / "timm-resnet18"
    timm.models.save_for_hf(model, str(folder), safe_serialization=True)
    return model, folder


def test_torchvision_checkpoint_imports_with_equal_outputs(tmp_path, tv_model, inputs):
    path = _torchvision_cache_file(tmp_path, tv_model)
    folder = zoo.import_weights(path, "resnet18", tmp_path / "w")
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    model = zoo.create_model(str(folder)).eval()
    with torch.no_grad():
        assert torch.equal(model(inputs), tv_model(inputs))
    meta = model.pretrained_weights
    assert meta.labels == tuple(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
    assert (meta.input_size, meta.resize_size, meta.mean) == ((3, 224, 224), 256, (0.485, 0.456, 0.406))
    source = meta.source
    assert source["library"] == "torchvision" and source["file"] == path.name
    assert source["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert source["license"] == "bsd-3-clause"
    config = json.loads((folder / "config.json").read_text())
    assert (
        config["weights"]["sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    )
    card = (folder / "README.md").read_text()
    assert "imported from torchvision" in card and "shorter side resized to 256" in card


def test_other_bytes_under_a_published_file_name_are_refused(tmp_path, tv_model):
    # The name of torchvision's published ResNet-18 file, holding other (random) bytes: its hash prefix
    # does not match, as torch.hub's check_hash would find.
    weight = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    published = tmp_path / weight.url.rsplit("/", 1)[-1]
    torch.save(tv_model.state_dict(), published)
    with pytest.raises(WeightsError, match="does not start with the hash prefix"):
        read_checkpoint(published)


def test_enum_metadata_is_read_for_a_matching_file(monkeypatch, tmp_path, tv_model):
    # Pretend torchvision published our random file: its metadata becomes the weight's.
    path = _torchvision_cache_file(tmp_path, tv_model)
    weight = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    monkeypatch.setattr("zoo.importing._torchvision_weight", lambda arch, name: weight)
    folder = zoo.import_weights(path, "resnet18", tmp_path / "w", tag="v2")
    meta = zoo.load_pretrained(folder).pretrained_weights
    assert meta.tag == "v2" and meta.resize_size == 232 and meta.interpolation == "bilinear"
    assert meta.source["weights"] == "ResNet50_Weights.IMAGENET1K_V2"
    assert (
        meta.source["reported_metrics"]["ImageNet-1K acc@1"]
        == weight.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    )


def test_timm_checkpoint_imports_with_equal_outputs(tmp_path, timm_folder, inputs):
    source, folder = timm_folder
    for given in (folder, folder / "model.safetensors"):  # the folder or the file itself
        out = zoo.import_weights(given, out=tmp_path / f"w-{given.name}")
        model = zoo.create_model(str(out)).eval()
        with torch.no_grad():
            assert torch.equal(model(inputs), source(inputs))
    meta = model.pretrained_weights
    cfg = source.pretrained_cfg
    assert meta.tag == cfg["tag"] and meta.interpolation == cfg["interpolation"]
    assert meta.resize_size == int(224 / cfg["crop_pct"]) and meta.labels == imagenet_labels()
    assert meta.source["library"] == "timm" and meta.source["weights"] == f"resnet18.{cfg['tag']}"


def test_timm_repo_resolves_through_the_hugging_face_cache(tmp_path, timm_folder, hub, inputs):
    from huggingface_hub import HfApi

    source, folder = timm_folder
    api = HfApi()
    api.create_repo("timm/resnet18.test")
    api.upload_folder(repo_id="timm/resnet18.test", folder_path=str(folder))
    out = zoo.import_weights("timm/resnet18.test", "resnet18", tmp_path / "w")
    model = zoo.create_model(str(out)).eval()
    with torch.no_grad():
        assert torch.equal(model(inputs), source(inputs))
    assert model.pretrained_weights.source["repo"] == "timm/resnet18.test"


def test_family_hook_maps_both_ways(timm_folder, tv_model):
    from zoo.models.resnet import state_dict_from, state_dict_to

    source, _ = timm_folder
    ours = zoo.create_model("resnet18")
    ours.load_state_dict(state_dict_from("timm", source.state_dict()), strict=True)
    back = timm.create_model("resnet18", pretrained=False)
    back.load_state_dict(state_dict_to("timm", ours.state_dict()), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), source.state_dict().values()))
    tv = torchvision.models.resnet18()
    tv.load_state_dict(state_dict_to("torchvision", ours.state_dict()), strict=True)
    with pytest.raises(ConfigError, match="deep three-conv stem"):
        state_dict_from("timm", timm.create_model("resnet18d", pretrained=False).state_dict())


def test_tampered_file_and_wrong_prefix_are_refused(tmp_path, tv_model):
    path = _torchvision_cache_file(tmp_path, tv_model)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not start with the hash prefix"):
        zoo.import_weights(path, "resnet18", tmp_path / "w")
    assert not (tmp_path / "w").exists()
    renamed = tmp_path / "resnet18-00000000.pth"
    torch.save(tv_model.state_dict(), renamed)
    with pytest.raises(WeightsError, match="hash prefix"):
        read_checkpoint(renamed)
    unnamed = tmp_path / "resnet18.pth"
    torch.save(tv_model.state_dict(), unnamed)
    with pytest.raises(WeightsError, match="no hash prefix"):
        read_checkpoint(unnamed)
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(WeightsError, match="not the expected"):
        read_checkpoint(unnamed, sha256=wrong)


def test_timm_pin_is_checked(timm_folder):
    _, folder = timm_folder
    with pytest.raises(WeightsError, match="not the expected"):
        read_checkpoint(folder, sha256="0" * 64)


def test_anything_that_needs_unpickling_is_refused(tmp_path):
    import argparse

    path = tmp_path / "resnet18-00000000.pth"
    # Any object outside tensors and plain containers needs unpickling code: here an argparse.Namespace.
    torch.save({"weight": torch.zeros(1), "extra": argparse.Namespace(lr=0.1)}, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    named = tmp_path / f"resnet18-{sha[:8]}.pth"
    path.rename(named)
    with pytest.raises(WeightsError, match="weights_only=True"):
        read_checkpoint(named)
    pickle_file = tmp_path / "model.pkl"
    pickle_file.write_bytes(b"not read")
    with pytest.raises(WeightsError, match="unpickling"):
        read_checkpoint(pickle_file)


def test_leftover_keys_are_listed_never_partially_loaded(tmp_path, tv_model):
    state = tv_model.state_dict()
    state["layer5.weight"] = torch.zeros(1)
    del state["layer4.1.conv2.weight"]
    path = tmp_path / "x.pth"
    torch.save(state, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    named = tmp_path / f"resnet18-{sha[:8]}.pth"
    path.rename(named)
    with pytest.raises(IncompatibleKeysError, match=r"layer4\.1\.conv2\.weight") as err:
        zoo.import_weights(named, "resnet18", tmp_path / "w")
    assert err.value.unexpected == ["layer5.weight"]
    assert not (tmp_path / "w").exists()


def test_old_checkpoints_without_batch_counters_import(tmp_path, tv_model, inputs):
    state = {k: v for k, v in tv_model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "x.pth"
    torch.save(state, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    named = tmp_path / f"resnet18-{sha[:8]}.pth"
    path.rename(named)
    model = zoo.create_model(str(zoo.import_weights(named, "resnet18", tmp_path / "w"))).eval()
    with torch.no_grad():
        assert torch.equal(model(inputs), tv_model(inputs))


def test_wrong_arch_and_existing_out_are_refused(tmp_path, tv_model):
    path = _torchvision_cache_file(tmp_path, tv_model)
    with pytest.raises(ConfigError, match="not 'resnet34'"):
        zoo.import_weights(path, "resnet34", tmp_path / "w")
    (tmp_path / "w").mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        zoo.import_weights(path, "resnet18", tmp_path / "w")
    assert zoo.import_weights(path, "resnet18", tmp_path / "w", overwrite=True).is_dir()
    other = _torchvision_cache_file(tmp_path, tv_model, arch="mynet")
    with pytest.raises(ConfigError, match="'cnn' family .* declares no mapping from torchvision.*resnet"):
        zoo.import_weights(other, "cnn", tmp_path / "w3")


def test_cli_import_then_predict_prints_imagenet_names(tmp_path, tv_model, capsys):
    from PIL import Image

    path = _torchvision_cache_file(tmp_path, tv_model)
    out = tmp_path / "resnet18.tv"
    assert main(["import", str(path), "--arch", "resnet18", "--out", str(out)]) == 0
    assert "sha256" in capsys.readouterr().out
    image = tmp_path / "photo.png"
    Image.new("RGB", (300, 200), (120, 60, 30)).save(image)
    assert main(["predict", str(out), str(image), "--topk", "2"]) == 0
    line = capsys.readouterr().out.strip()
    names = set(imagenet_labels())
    shown = [part.rsplit(" ", 1)[0] for part in line.split(": ", 1)[1].split(", ")]
    assert len(shown) == 2 and all(name in names for name in shown)
    assert main(["import", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "x")]) == 2


def test_a_timm_release_pth_imports_with_library_and_arch(tmp_path, timm_folder, inputs):
    # timm's GitHub release files are .pth named by their training run, not by the architecture.
    source, _ = timm_folder
    path = _torchvision_cache_file(tmp_path, source, arch="resnet18_a1_0")
    out = zoo.import_weights(path, "resnet18", tmp_path / "w", library="timm")
    model = zoo.create_model(str(out)).eval()
    with torch.no_grad():
        assert torch.equal(model(inputs), source(inputs))
    assert model.pretrained_weights.source["library"] == "timm"
    with pytest.raises(zoo.UnknownModelError, match="resnet18_a1_0"):
        zoo.import_weights(path, out=tmp_path / "w2")


@pytest.mark.parametrize(("interpolation", "size"), [("bilinear", (300, 200)), ("bicubic", (180, 260))])
def test_imagenet_preprocessing_matches_torchvision(interpolation, size):
    # What `zoo predict` (and the ONNX runtime) feed an imported ImageNet weight: torchvision's evaluation
    # transform, pixel for pixel on PIL images.
    import numpy as np
    from PIL import Image
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize

    from zoo.preprocess import resize_center_crop

    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    ours = resize_center_crop(array, 64, (56, 56), interpolation)
    mode = InterpolationMode(interpolation)
    theirs = np.asarray(CenterCrop(56)(Resize(64, interpolation=mode)(Image.fromarray(array))))
    assert ours.shape == (56, 56, 3) and np.array_equal(ours, theirs)


def test_torchvision_segmentation_checkpoint_imports_with_equal_outputs(monkeypatch, tmp_path):
    """FCN / DeepLab v3 share torchvision's layout: classes and the aux head are read off the tensors, labels
    and mean/std off torchvision's enum entry; any image size is kept (padded to a multiple of 8)."""
    from torchvision.models.segmentation import FCN_ResNet50_Weights, fcn_resnet50

    torch.manual_seed(3)
    source = fcn_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).eval()
    path = _torchvision_cache_file(tmp_path, source, "fcn_resnet50_coco")
    weight = FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1
    monkeypatch.setattr("zoo.importing._torchvision_weight", lambda arch, name: weight)
    folder = zoo.import_weights(path, "fcn_resnet50", tmp_path / "w")
    model = zoo.create_model(str(folder)).eval()
    meta = model.pretrained_weights
    assert meta.labels == tuple(weight.meta["categories"]) and meta.size_multiple == 8
    assert meta.mean == tuple(weight.transforms().mean) and meta.dataset == "coco"
    assert model.aux_classifier is not None and meta.source["weights"].endswith("COCO_WITH_VOC_LABELS_V1")
    x = torch.rand(1, 3, 67, 93)
    with torch.no_grad():
        assert torch.equal(model(x), source(x)["out"])


def test_torchvision_detector_checkpoint_imports_with_equal_outputs(tmp_path):
    from torchvision.models.detection import retinanet_resnet50_fpn

    torch.manual_seed(4)
    source = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5).eval()
    path = _torchvision_cache_file(tmp_path, source, "retinanet_resnet50_fpn")
    folder = zoo.import_weights(path, out=tmp_path / "w")  # the architecture read off the file name
    model = zoo.create_model(str(folder)).eval()
    assert model.num_classes == 5 and model.pretrained_weights.task == "object-detection"
    images = [torch.rand(3, 96, 128)]
    with torch.no_grad():
        want, got = source(images)[0], model(images)[0]
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    # A detector's checkpoint is no segmentation model: refused, naming the architecture the file is for.
    with pytest.raises(ConfigError, match="not 'fcn_resnet50': pass --arch retinanet_resnet50_fpn"):
        zoo.import_weights(path, "fcn_resnet50", tmp_path / "w2")
