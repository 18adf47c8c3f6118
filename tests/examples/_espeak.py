"""The speech examples need the `espeak-ng` program: skip or fail without it.

On a developer's machine a missing `espeak-ng` skips the speech tests with
the reason. Where the `CI` environment variable is set (as GitHub Actions
and most CI services do), the set-up installs `espeak-ng` from
requirements/system.txt, so a missing program is a broken set-up and the
tests fail instead of passing silently.
"""

import os
import shutil

import pytest


def require_espeak():
    """Skips the calling test (fails it on CI) when espeak-ng is missing."""
    if shutil.which("espeak-ng") is not None:
        return
    message = (
        "needs the espeak-ng program (Debian/Ubuntu: apt-get install "
        "espeak-ng; the set-up installs it from requirements/system.txt)"
    )
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI is set but espeak-ng is not on PATH: {message}")
    pytest.skip(message)


@pytest.fixture
def espeak():
    """A fixture form of `require_espeak` for tests that request it."""
    require_espeak()
