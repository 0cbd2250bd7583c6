"""CI's no-skip rule, shared by the pytest suites (tests/packaging, tests/vm): a test whose
tool or privilege is missing skips with the reason, except under CI=true, where it fails."""

from __future__ import annotations

import os

import pytest

IS_CI = os.environ.get("CI") == "true"


def require(condition: bool, reason: str) -> None:
    """Skips with the reason, except under CI=true, where the missing piece fails the test."""
    if condition:
        return
    if IS_CI:
        pytest.fail(f"{reason} (CI=true: this test must run)")
    pytest.skip(reason)
