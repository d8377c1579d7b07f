"""Test-session set-up: nothing may reach the network, and the HF client is pointed at local places.

The Hugging Face client reads its endpoint and cache locations when it is imported, so they are set
here, before any test module imports it.
"""

from __future__ import annotations

import os
import tempfile
import time

_HF_HOME = tempfile.mkdtemp(prefix="zoo-test-hf-")
os.environ["HF_HOME"] = _HF_HOME
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: connections are refused
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("ZOO_HUB_DIR", None)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


class _NoSleepTime:
    """The `time` module as the HF client's retry loop sees it, minus the waiting."""

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def sleep(_seconds: float) -> None:
        return None


@pytest.fixture(autouse=True)
def _fast_hf_retries(monkeypatch):
    """The HF client retries refused connections and 5xx for ~23 s; tests need the error, not the wait.

    Only the client's own reference to `time` is swapped, so `time.sleep` elsewhere still sleeps.
    """
    import huggingface_hub.utils._http as http

    monkeypatch.setattr(http, "time", _NoSleepTime())


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty hub folder searched before the in-tree one (``ZOO_HUB_DIR``)."""
    folder = tmp_path / "hub"
    folder.mkdir()
    monkeypatch.setenv("ZOO_HUB_DIR", str(folder))
    return folder


@pytest.fixture
def demo_weight(hub_dir):
    """A small trained-looking weight, ``resnet8_small.demo``, declared in code and stored in `hub_dir`."""
    import zoo
    from zoo.registry import Weights, register_weights, unregister_weights

    torch.manual_seed(0)
    model = zoo.create_model("resnet8_small", in_chans=1, num_classes=10, img_size=28)
    meta = Weights(
        arch="resnet8_small",
        tag="demo",
        task="image-classification",
        labels=tuple(str(i) for i in range(10)),
        mean=(0.5,),
        std=(0.25,),
        dataset="synthetic",
        split="none",
        metrics={"top1": 0.25},
    )
    folder = zoo.save_pretrained(model, hub_dir / "resnet8_small.demo", meta)
    written = zoo.load_pretrained(folder).pretrained_weights
    register_weights(written.replace(tag="demo"))
    yield "resnet8_small.demo"
    unregister_weights("resnet8_small.demo")
