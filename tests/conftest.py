"""Shared test setup: no network, deterministic torch, a temp folder per test."""

from __future__ import annotations

import os
import socket

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


class _NoNetwork(socket.socket):
    def connect(self, address):  # type: ignore[override]
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("/"):
            raise RuntimeError(f"tests must not use the network (tried to connect to {address!r})")
        return super().connect(address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach a non-local host fails the test loudly."""
    monkeypatch.setattr(socket, "socket", _NoNetwork)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
