"""The test/emulation node clock (FASTMETER_CLOCK_OFFSET_NS, FASTMETER_CLOCK_DRIFT_PPM): node and monotonic
instants map both ways, arrays as scalars do, and bad settings are refused with the variable named."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastmeter.cluster.emulated_clock import NodeClock
from fastmeter.errors import ConfigError


@given(
    offset_ns=st.integers(-(10**15), 10**15),
    drift_ppm=st.floats(-1000, 1000),
    mono=st.lists(st.integers(0, 10**15), min_size=1, max_size=20),
)
def test_node_and_monotonic_instants_map_both_ways(offset_ns: int, drift_ppm: float, mono: list[int]) -> None:
    c = NodeClock(offset_ns, drift_ppm, origin_ns=10**14)
    t = np.array(mono, dtype=np.int64)
    node = c.node_array(t)
    assert node.tolist() == [c.node_ns(x) for x in mono]
    assert np.all(np.abs(c.mono_array(node) - t) <= 1)
    assert all(abs(c.mono_ns(c.node_ns(x)) - x) <= 1 for x in mono)
    # The node's clock runs at (1 + drift) of the machine's: the offset grows by drift x elapsed time.
    expected = offset_ns + drift_ppm * 1e-6 * (mono[0] - 10**14)
    assert abs(c.node_ns(mono[0]) - mono[0] - expected) <= 1


def test_unset_is_the_machines_clock_and_bad_settings_are_named() -> None:
    c = NodeClock.from_env({})
    assert c.node_ns(12345) == 12345 and c.mono_ns(12345) == 12345
    with pytest.raises(ConfigError, match="FASTMETER_CLOCK_OFFSET_NS='1.5ms'"):
        NodeClock.from_env({"FASTMETER_CLOCK_OFFSET_NS": "1.5ms"})
    for bad in ("fast", "nan", "1e9"):
        with pytest.raises(ConfigError, match="FASTMETER_CLOCK_DRIFT_PPM"):
            NodeClock.from_env({"FASTMETER_CLOCK_DRIFT_PPM": bad})
