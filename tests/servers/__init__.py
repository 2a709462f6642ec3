"""Real inference servers for integration tests (the venv is built by tests/servers/vllm_env.sh)."""
