"""Pure-Python twins of the native numeric kernels, used by tests on random inputs."""
