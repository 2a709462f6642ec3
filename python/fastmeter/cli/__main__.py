"""`python -m fastmeter.cli` runs the CLI (the same as the `fastmeter` console script)."""

from fastmeter.cli import main

main()
