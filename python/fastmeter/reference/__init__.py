"""Pure-Python twins of the native kernels, for property tests and as executable documentation."""
