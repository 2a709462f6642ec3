"""`fastmeter bench`: serving benchmarks with measured energy per request and per token."""
