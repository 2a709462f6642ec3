"""Metrics computed from recorded traces and runs."""
