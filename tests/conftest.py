"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads; a shared machine loses a lot to them (restored
    afterwards). A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def smoke_repo(tmp_path_factory):
    """The smoke preset reproduced once per session in a copy of the working tree (several minutes),
    shared by the end-to-end, bad-input and stage tests (tests/test_pipeline_e2e.py)."""
    from test_pipeline_e2e import build_smoke_repo

    return build_smoke_repo(tmp_path_factory.mktemp("smoke") / "repo")
