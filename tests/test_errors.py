"""lib_lcm.weights.errors: OS errors become the WeightsError that names the fix."""
from __future__ import annotations

import errno
import os

import pytest

from lib_lcm.weights.errors import (
    WeightsDiskFullError,
    WeightsFilesystemError,
    WeightsPermissionError,
    filesystem_error,
)


@pytest.mark.parametrize("code, kind", [
    (errno.ENOSPC, WeightsDiskFullError),
    (errno.EROFS, WeightsPermissionError),
    (errno.EACCES, WeightsPermissionError),
    (errno.EIO, WeightsFilesystemError),
])
def test_filesystem_errors_name_the_fix(code, kind):
    error = filesystem_error(OSError(code, os.strerror(code)), "writing", "/x/y")
    assert type(error) is kind and "/x/y" in str(error)
    assert ("free some space" in str(error)) == (code == errno.ENOSPC)
    assert ("writable" in str(error)) == (kind is WeightsPermissionError)
