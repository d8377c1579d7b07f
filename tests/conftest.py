"""Test-session set-up: nothing may reach the network, and the HF client is pointed at local places.

The Hugging Face client reads its endpoint when it is imported, so ``HF_ENDPOINT``, ``HF_HOME`` and
``HF_TOKEN`` are set here, before any test module imports it. The endpoint is the test hub
(`tests/hub_server.py`): its socket is bound now, so its port is known, but it only accepts connections
once a test asks for the ``hub`` fixture; until then connecting to it is refused, as for any closed port.
The token is made up for this session: a real one in the environment is never used or seen.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import time

from tests.hub_server import HubServer

_HF_HOME = tempfile.mkdtemp(prefix="zoo-test-hf-")
HF_TOKEN = f"hf_zootest{secrets.token_hex(16)}"
HUB_SERVER = HubServer(tokens={HF_TOKEN})
# Bound and never listening: connections to it are refused for the whole session.
_REFUSING = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_REFUSING.bind(("127.0.0.1", 0))
REFUSING_ENDPOINT = f"http://127.0.0.1:{_REFUSING.getsockname()[1]}"

for _var in (
    "HF_HUB_OFFLINE",
    "HF_HUB_CACHE",
    "HF_HUB_DISABLE_XET",  # the client's default path (hf_xet installed) is the one users run
    "HUGGINGFACE_HUB_TOKEN",
    "HF_OIDC_RESOURCE",
    "HF_DEBUG",
    "ZOO_HUB_DIR",
):
    os.environ.pop(_var, None)
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_ENDPOINT"] = HUB_SERVER.url
os.environ["HF_TOKEN"] = HF_TOKEN
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402


def _keep_freed_memory() -> None:
    """Keep freed memory in the heap instead of handing every large block back to the OS (glibc only).

    glibc's defaults give each freed activation back to the OS, so eager PyTorch pays page faults for the
    next one (FACTS, "Measured later"): 30-40% of the CPU time of the published-weight and preset tests was
    the kernel zeroing pages (cpc_cnn.mnist's re-measure: 10 s of sys time in 27 s, 0.7 s with these
    settings). `export.throughput.MALLOC_ENV`'s settings, in this process (mallopt: glibc read the
    environment at start-up) and in the processes tests start (`zoo` CLI runs, torchrun) through the
    environment. Allocation only: no number a test checks depends on it.
    """
    import ctypes
    import sys

    from export.throughput import MALLOC_ENV

    for key, value in MALLOC_ENV.items():
        os.environ.setdefault(key, value)
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        mmap_threshold = int(os.environ["MALLOC_MMAP_THRESHOLD_"])
        trim_threshold = min(int(os.environ["MALLOC_TRIM_THRESHOLD_"]), 2**31 - 1)  # mallopt takes an int
    except (OSError, ValueError):  # not glibc, or the environment set them to something else
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    libc.mallopt(m_mmap_threshold, mmap_threshold)
    libc.mallopt(m_trim_threshold, trim_threshold)


_keep_freed_memory()

# Two threads on the 2-core machines this suite is sized for; under pytest-xdist the cores are shared by
# the workers (one thread each on 2 cores), since oversubscribed threads only slow every worker down.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 2) // _WORKERS)))


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


@pytest.fixture(scope="session")
def hub_server():
    """The test hub, accepting connections from the first test that asks for it to the end of the session."""
    HUB_SERVER.start()
    yield HUB_SERVER
    HUB_SERVER.stop()


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """Point the HF client at a fresh, empty cache; calling the fixture's value switches to another one.

    The client reads ``constants.HF_HUB_CACHE`` on each download, so this takes effect at once.
    """
    import huggingface_hub.constants as constants

    count = iter(range(1000))

    def fresh():
        folder = tmp_path / f"hf-cache-{next(count)}"
        folder.mkdir()
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
        return folder

    fresh.folder = fresh()
    return fresh


@pytest.fixture
def hub(hub_server, hf_cache):
    """The running test hub with a fresh HF cache; faults are cleared and server errors reported after."""
    errors_before = len(hub_server.state.errors)
    yield hub_server
    hub_server.clear_faults()
    assert hub_server.state.errors[errors_before:] == [], "the test hub failed while serving"


@pytest.fixture
def hub_unreachable(monkeypatch):
    """Point the HF client at a port where connections are refused (the endpoint it read at import)."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", REFUSING_ENDPOINT)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        REFUSING_ENDPOINT + "/{repo_id}/resolve/{revision}/{filename}",
    )
    return REFUSING_ENDPOINT
