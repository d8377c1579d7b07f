"""``zoo data list | info | show | export``."""

from __future__ import annotations

import json

from zoo.cli import main


def test_list_and_info(capsys):
    assert main(["data", "list", "-v"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist_5k", "digit_scenes_64", "digit_scenes_128", "photos"):
        assert name in out
    assert "last 100 images of each digit" in out
    assert main(["data", "list", "digit*", "--target", "caption"]) == 0
    assert capsys.readouterr().out.count("\n") == 3
    assert main(["data", "info", "digit_scenes_64"]) == 0
    assert json.loads(capsys.readouterr().out)["defaults"] == {"size": 64, "max_digits": 3}


def test_show_writes_a_png(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "scenes.png"
    assert main(["data", "show", "digit_scenes_64", "--n", "4", "--out", str(out)]) == 0
    picture = Image.open(out)
    assert picture.mode == "RGB" and picture.width >= 3 * 256 and picture.height > 256
    assert (
        main(["data", "show", "mnist_5k", "--split", "train", "--n", "10", "--out", str(tmp_path / "m.png")])
        == 0
    )
    assert (tmp_path / "m.png").is_file()


def test_export_coco_and_errors(tmp_path, capsys):
    out = tmp_path / "coco"
    args = ["data", "export", "digit_scenes", "--n", "3", "--out", str(out), "--set", "size=48"]
    assert main(args) == 0
    instances = json.loads((out / "instances.json").read_text())
    assert len(instances["images"]) == 3 and instances["images"][0]["width"] == 48
    assert main(["data", "export", "mnist_5k", "--out", str(tmp_path / "x")]) == 2
    assert "instance masks" in capsys.readouterr().err
    assert main(["data", "show", "nope", "--out", str(tmp_path / "y.png")]) == 2
    assert "unknown dataset" in capsys.readouterr().err
