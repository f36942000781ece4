"""Test-wide setup: no test may touch the network, and caches go to a temporary folder."""

from __future__ import annotations

import os
import socket

import pytest
import torch

# Before anything imports huggingface_hub: never try the hub (fail fast instead of retrying).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

# pytest-xdist (`make test`: -n auto): each worker gets its share of the cores. Every worker on
# torch's default thread count would oversubscribe the machine, and OpenMP threads that wait
# for a core spin: a 30-step tiny training took 168 s on 2 threads instead of 15 s on 1
# thread on 2 busy cores.
_XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _XDIST_WORKERS > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _XDIST_WORKERS))


class NetworkAccessError(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with outbound sockets blocked (AF_UNIX stays allowed)."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        raise NetworkAccessError(f"test tried to open a network connection to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "create_connection",
                        lambda *a, **k: (_ for _ in ()).throw(
                            NetworkAccessError(f"test tried create_connection{a!r}")))


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Point ``$ISOCLIP_CACHE`` at a fresh temporary folder."""
    monkeypatch.setenv("ISOCLIP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module (many small ops: faster on 2 shared cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny():
    """A random-init tiny open_clip model (``isoclip-tiny-vit``, seed 0)."""
    from isoclip.models.loading import load_model

    return load_model("isoclip-tiny-vit", seed=0)


@pytest.fixture(scope="session")
def image_targets():
    """``image_targets(bundle, n, seed)``: image features [n, d] of ``n`` seeded random images
    (inversion targets for tests)."""
    def make(bundle, n: int, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 3, bundle.image_size, bundle.image_size, generator=gen)
        with torch.no_grad():
            return bundle.model.encode_image(x)
    return make
