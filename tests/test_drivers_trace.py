"""HDF5 traces keep what was measured: appended data is on disk even when the run stops with an error."""

from __future__ import annotations

import numpy as np
import pytest

from drivers import ComplianceError
from drivers.trace import TraceWriter, read_trace
from hwloop.errors import HwloopError


def test_trace_keeps_readings_and_records_the_error(tmp_path) -> None:
    path = tmp_path / "run.h5"
    with pytest.raises(ComplianceError), TraceWriter(path, {"resource": "sim", "read_v": 0.1}) as trace:
        trace.append([0.0, 0.1], [1e-9, 2e-9])
        trace.append(0.2, 3e-9)
        raise ComplianceError("current reached the compliance")
    t_s, i_a, attrs = read_trace(path)
    np.testing.assert_array_equal(t_s, [0.0, 0.1, 0.2])
    np.testing.assert_array_equal(i_a, [1e-9, 2e-9, 3e-9])
    assert not attrs["complete"]
    assert attrs["error"] == "ComplianceError: current reached the compliance"
    assert attrs["read_v"] == 0.1 and attrs["created_utc"]


def test_complete_trace_and_unreadable_files(tmp_path) -> None:
    path = tmp_path / "ok.h5"
    with TraceWriter(path, {}) as trace:
        trace.append(np.arange(3.0), np.ones(3))
    assert read_trace(path)[2]["complete"]
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(HwloopError, match="cannot read trace file"):
        read_trace(bad)
