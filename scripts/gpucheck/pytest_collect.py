"""A pytest plugin for the GPU check's test part (``-p gpucheck.pytest_collect``): a module that
fails to import (an optional library missing on the GPU machine) is reported, but does not count
towards ``-x``/``--maxfail``, which would otherwise stop the run before its first test."""

from __future__ import annotations

import pytest

_saved: dict = {}


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    _saved["maxfail"] = session.config.option.maxfail
    session.config.option.maxfail = 0  # collection errors do not stop the run


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.option.maxfail = _saved.get("maxfail", 0)
    if session.testsfailed:
        print(
            f"\ngpu_check: {session.testsfailed} collection error(s) (listed at the end); "
            f"the tests that were collected run anyway"
        )
        session.testsfailed = 0
