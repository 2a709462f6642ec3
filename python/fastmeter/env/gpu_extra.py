"""GPU fingerprint items beside power and clocks (issue 13): application clocks, locked clocks, ECC and PCIe link.

Controlled (they change energy at equal work, so compared runs must match): application clocks (what `nvidia-smi
-ac` set), whether and where this process locked the GPU clocks (`fastmeter trace --lock-clocks`; NVML has no query
for a lock set by someone else, so that case reads "not locked by fastmeter"), ECC mode (ECC costs memory
bandwidth), and the PCIe link's maximum generation and width (the slot the GPU sits in). Observed: the PCIe link's
current generation and width (it trains down at idle to save power).
"""

from __future__ import annotations

from typing import Any

from fastmeter.control import LOCKED_CLOCKS_MHZ

NOT_LOCKED = "not locked by fastmeter (NVML cannot read a lock set elsewhere)"


def extra_controlled(reader: Any, handle: Any, index: int) -> dict[str, Any]:
    nv, get = reader.nv, reader.get
    ecc = get(lambda: nv.nvmlDeviceGetEccMode(handle))
    return {
        "applications_clocks_mhz": {
            "graphics": get(lambda: nv.nvmlDeviceGetApplicationsClock(handle, nv.NVML_CLOCK_GRAPHICS)),
            "memory": get(lambda: nv.nvmlDeviceGetApplicationsClock(handle, nv.NVML_CLOCK_MEM)),
        },
        "locked_clocks_mhz": LOCKED_CLOCKS_MHZ.get(index, NOT_LOCKED),
        "ecc_mode": ecc if isinstance(ecc, str) else ("enabled" if ecc[0] else "disabled"),
        "pcie_max": {
            "generation": get(lambda: nv.nvmlDeviceGetMaxPcieLinkGeneration(handle)),
            "width": get(lambda: nv.nvmlDeviceGetMaxPcieLinkWidth(handle)),
        },
    }


def extra_observed(reader: Any, handle: Any) -> dict[str, Any]:
    nv, get = reader.nv, reader.get
    return {
        "pcie_current": {
            "generation": get(lambda: nv.nvmlDeviceGetCurrPcieLinkGeneration(handle)),
            "width": get(lambda: nv.nvmlDeviceGetCurrPcieLinkWidth(handle)),
        },
    }
