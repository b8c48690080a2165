"""Shared test set-up: offscreen Qt, Hypothesis profiles, the size of slow tests."""

from __future__ import annotations

import os

# Before anything imports Qt: tests never need a real display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Settings, recent files and logs of the app (and of the `imemviz` processes tests
# start) go to a folder of this test run, never to the real home.
if not (os.environ.get("IMEMVIZ_CONFIG_DIR") and os.environ.get("IMEMVIZ_LOG_DIR")):
    import atexit
    import shutil
    import tempfile

    _user_dirs = tempfile.mkdtemp(prefix="imemviz-test-home-")
    atexit.register(shutil.rmtree, _user_dirs, True)
    os.environ.setdefault("IMEMVIZ_CONFIG_DIR", os.path.join(_user_dirs, "config"))
    os.environ.setdefault("IMEMVIZ_LOG_DIR", os.path.join(_user_dirs, "log"))

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis profiles, picked with HYPOTHESIS_PROFILE (default "ci").
#   ci:  no per-example deadline (CI machines are slow and shared), moderate size.
#   dev: quick runs while editing.
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=25)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SLOW = os.environ.get("IMEMVIZ_SLOW", "") not in ("", "0")


@pytest.fixture(scope="session")
def slow_scale() -> int:
    """How much bigger a `slow` test should run: 10 with IMEMVIZ_SLOW=1, else 1.

    Slow tests always run; without IMEMVIZ_SLOW they run at the small size, e.g.
    ``n_ops = 200 * slow_scale``.
    """
    return 10 if SLOW else 1


def pytest_report_header(config: pytest.Config) -> str:
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    size = "full (IMEMVIZ_SLOW=1)" if SLOW else "small (set IMEMVIZ_SLOW=1 for full)"
    return f"imemviz: hypothesis profile {profile}; slow tests at {size} size"
