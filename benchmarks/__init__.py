"""fastmeter's benchmark suite: speed and overhead targets live here, never in tests. See benchmarks/README.md."""
