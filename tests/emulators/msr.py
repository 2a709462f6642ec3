"""A fake msr device tree for the "rapl-msr" source: /dev/cpu/<N>/msr, CPU topology and /proc/cpuinfo.

Each ``msr`` file is a regular (sparse) file: the 8 bytes at offset R, little-endian, are register R, which is how
the msr driver answers pread(fd, buf, 8, R). A register past the end of the file reads short, which the source
treats like the driver's EIO for an unsupported MSR. Registers in the middle of the file that were never written
read as 0, so "unsupported" can only be modelled for the highest addresses.

AMD's RAPL registers are adjacent addresses (0xC0010299, 0xC001029A, 0xC001029B), so in a file their bytes
overlap: writing one changes the others. ``register_value`` reads back what a pread sees; tests of AMD values
lay the bytes out explicitly with ``write_bytes``.

Point the source at it with ``env()``: FASTMETER_MSR_ROOT, FASTMETER_SYSFS_CPU_ROOT, FASTMETER_CPUINFO.
"""

from __future__ import annotations

from pathlib import Path

INTEL_UNIT, INTEL_PKG, INTEL_DRAM, INTEL_PP0, INTEL_PP1, INTEL_PSYS = 0x606, 0x611, 0x619, 0x639, 0x641, 0x64D
AMD_UNIT, AMD_CORE, AMD_PKG = 0xC0010299, 0xC001029A, 0xC001029B

VENDOR_ID = {"intel": "GenuineIntel", "amd": "AuthenticAMD"}


def unit_register(esu: int, power_units: int = 3, time_units: int = 10) -> int:
    """A RAPL power-unit register: PU bits 3:0, ESU bits 12:8, TU bits 19:16."""
    return power_units | (esu << 8) | (time_units << 16)


class FakeMsr:
    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.dev_cpu = self.base / "dev-cpu"
        self.sys_cpu = self.base / "sys-cpu"
        self.cpuinfo = self.base / "cpuinfo"
        self.dev_cpu.mkdir(parents=True, exist_ok=True)
        self.sys_cpu.mkdir(parents=True, exist_ok=True)
        # Entries that are not CPUs, as in the real /sys/devices/system/cpu.
        (self.sys_cpu / "cpufreq").mkdir(exist_ok=True)
        (self.sys_cpu / "online").write_text("0\n")

    def env(self) -> dict[str, str]:
        return {
            "FASTMETER_MSR_ROOT": str(self.dev_cpu),
            "FASTMETER_SYSFS_CPU_ROOT": str(self.sys_cpu),
            "FASTMETER_CPUINFO": str(self.cpuinfo),
        }

    def write_cpuinfo(self, vendor: str, family: int, model: int, cpus: int = 1) -> None:
        vid = VENDOR_ID.get(vendor, vendor)
        blocks = [
            f"processor\t: {i}\nvendor_id\t: {vid}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
            f"model name\t: fake\n"
            for i in range(cpus)
        ]
        self.cpuinfo.write_text("\n".join(blocks))

    def add_cpu(self, cpu: int, package: int, registers: dict[int, int] | None = None) -> None:
        """CPU <cpu> in package <package>; registers {address: value} go into its msr file (None: no msr file)."""
        topo = self.sys_cpu / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text(f"{package}\n")
        if registers is None:
            return
        (self.dev_cpu / str(cpu)).mkdir()
        self.msr_path(cpu).touch()
        for address, value in sorted(registers.items()):
            self.set_register(cpu, address, value)

    def msr_path(self, cpu: int) -> Path:
        return self.dev_cpu / str(cpu) / "msr"

    def write_bytes(self, cpu: int, offset: int, data: bytes) -> None:
        with open(self.msr_path(cpu), "r+b") as f:
            f.seek(offset)
            f.write(data)

    def set_register(self, cpu: int, address: int, value: int) -> None:
        self.write_bytes(cpu, address, value.to_bytes(8, "little"))

    def register_value(self, cpu: int, address: int) -> int:
        with open(self.msr_path(cpu), "rb") as f:
            f.seek(address)
            return int.from_bytes(f.read(8), "little")

    def deny(self, cpu: int) -> None:
        self.msr_path(cpu).chmod(0o000)
