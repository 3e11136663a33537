"""Test setup: interpreter mode without CUDA (set before anything imports triton), a device
fixture, NaN-filled kernel outputs, fresh seeds. The numerics contract lives in fastgru.testing."""

import os
import zlib

import torch

if not torch.cuda.is_available():
    # Must happen before fastgru (and so triton.jit) is imported.
    os.environ.setdefault("FASTGRU_BACKEND", "interpret")
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

import fastgru.launchers.alloc  # noqa: E402

fastgru.launchers.alloc.set_nan_fill(True)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device():
    return DEVICE


@pytest.fixture(autouse=True)
def _seed(request):
    # A fresh but reproducible seed per test, derived from its id.
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))
