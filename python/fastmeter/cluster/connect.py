"""Reaching a Ray cluster and placing one meter actor on each node."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any

from fastmeter.cluster.actor import NodeMeter
from fastmeter.errors import ConfigError

# A Ray head that does not accept a TCP connection within this long is taken as absent.
CONNECT_TIMEOUT_S = 5.0


def connect(address: str | None) -> Any:
    """The ray module, connected: to `address` unless this process already called ray.init()."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    if address is None:
        raise ConfigError("Ray is not initialized here; pass address='HOST:PORT' (or 'auto') or call ray.init()")
    _check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(
            f"cannot connect to a Ray cluster at {address!r} ({str(e).splitlines()[0]}); start one with "
            "`ray start --head` or pass the address it printed"
        ) from None
    return ray


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ConfigError(f"cluster measurement needs Ray: pip install 'fastmeter[ray]' ({e})") from None
    return ray


def _check_reachable(address: str) -> None:
    """A HOST:PORT nobody listens on fails here in one line: ray.init would retry it for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", "local", ray://...: Ray resolves these itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ConfigError(
            f"no Ray cluster answers at {address!r} ({e.strerror or e}); start one with `ray start --head` "
            "or pass the address it printed"
        ) from None


def resolve_nodes(ray: Any, nodes: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """{node name: Ray node id}: every alive node (named node0, node1, ... in Ray's order) or the ones given."""
    alive = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    if nodes is None:
        return {f"node{i}": nid for i, nid in enumerate(alive)}
    named = dict(nodes) if isinstance(nodes, Mapping) else {f"node{i}": nid for i, nid in enumerate(nodes)}
    unknown = [nid for nid in named.values() if nid not in alive]
    if unknown:
        raise ConfigError(f"no alive Ray node {unknown[0]!r}; alive nodes: {', '.join(alive)}")
    bad = [n for n in named if not n or "/" in n]
    if bad:
        raise ConfigError(f"node name {bad[0]!r} must be non-empty and contain no '/' (channels are node/channel)")
    return named


def spawn_node_meters(
    ray: Any, named: Mapping[str, str], env_vars: Mapping[str, Mapping[str, str]], meter_args: tuple[Any, ...]
) -> dict[str, Any]:
    """One NodeMeter actor per {name: node id}, pinned there, with that node's env_vars in its runtime_env."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(NodeMeter)
    return {
        name: remote.options(
            num_cpus=0,  # a meter must not take a slot from the work it measures
            max_concurrency=4,  # clock reads are not queued behind a span that waits for counters
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=nid, soft=False),
            runtime_env={"env_vars": dict(env_vars.get(name, {}))},
        ).remote(*meter_args)
        for name, nid in named.items()
    }
