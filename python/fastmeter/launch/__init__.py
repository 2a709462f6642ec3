"""fastmeter starts the server it measures: a command or a container, in its own process group, ready-checked,
logged, watched for a crash and stopped by signal escalation (docs/launch.md)."""

from fastmeter.launch.container import ContainerError, container_command, inspect_image
from fastmeter.launch.process import ServerLaunchError, ServerProcess, log_tail
from fastmeter.launch.session import LaunchedServer, is_launched, launch_identity, launched_server

__all__ = [
    "ContainerError",
    "LaunchedServer",
    "ServerLaunchError",
    "ServerProcess",
    "container_command",
    "inspect_image",
    "is_launched",
    "launch_identity",
    "launched_server",
    "log_tail",
]
