"""``zoo track``: frames and a first-frame mask in, propagated masks and their picture out; clear input errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from zoo.cli import main
from zoo.errors import ConfigError
from zoo.tracking import read_frames, read_mask, track_strip


def test_track_a_test_video_with_the_published_weight(tmp_path, capsys):
    out = tmp_path / "track.png"
    assert main(["track", "colorization_tracker.videos", "--video", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("frame 0:") and printed[0].endswith("(IoU 1.00)")  # frame 0 is given
    assert printed[-1].startswith("12 frames") and out.is_file()
    assert Image.open(out).size[1] > 3 * 48  # frames, propagated masks, ground truth


def test_frames_and_masks_are_read_and_checked(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    gif = tmp_path / "clip.gif"
    Image.fromarray(frames[0]).save(
        gif, save_all=True, append_images=[Image.fromarray(f) for f in frames[1:]]
    )
    assert read_frames([gif]).shape == (3, 20, 24, 3)
    pngs = []
    for i, frame in enumerate(frames):
        pngs.append(tmp_path / f"f{i}.png")
        Image.fromarray(frame).save(pngs[-1])
    np.testing.assert_array_equal(read_frames(pngs), frames)
    with pytest.raises(ConfigError, match="at least 2 frames"):
        read_frames(pngs[:1])
    Image.fromarray(frames[0, :10]).save(tmp_path / "small.png")
    with pytest.raises(ConfigError, match="frames differ in size"):
        read_frames([*pngs, tmp_path / "small.png"])

    ids = np.zeros((20, 24), np.uint8)
    ids[2:6, 3:9] = 1
    Image.fromarray(ids).save(tmp_path / "mask.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.png", (20, 24)), ids)
    with pytest.raises(ConfigError, match="mask is 24x20, the frames 20x20"):
        read_mask(tmp_path / "mask.png", (20, 20))
    Image.fromarray(frames[0]).save(tmp_path / "rgb.png")
    with pytest.raises(ConfigError, match="single-channel image of instance ids"):
        read_mask(tmp_path / "rgb.png", (20, 24))
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(ConfigError, match="instance ids must be 1..255"):
        read_mask(tmp_path / "empty.png", (20, 24))
    assert track_strip(frames, np.zeros((3, 20, 24), np.uint8)).ndim == 3


def test_track_says_what_it_needs(capsys):
    assert main(["track", "colorization_tracker.videos"]) == 2
    assert "--mask FIRST_FRAME_IDS.png" in capsys.readouterr().err
    assert main(["track", "cnn.mnist", "--video", "0"]) == 2
    assert "not a mask-propagation weight" in capsys.readouterr().err
