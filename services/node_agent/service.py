"""`dockyard run node-agent`: one node, its pods run by the runc, the process or the hollow driver."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from dockyard.config import home
from dockyard.eventlog import EventLog
from dockyard.service import Health
from dockyard.services.node_agent.agent import NodeAgent
from dockyard.services.node_agent.hollow import DEFAULT_START_DELAY, HollowDriver
from dockyard.services.node_agent.logs import LogPublisher
from dockyard.services.node_agent.node import capacity, node_manifest, parse_labels, parse_taints
from dockyard.services.node_agent.process_driver import ProcessDriver, ProcessDriverConfig
from dockyard.services.node_agent.restarts import BackOff
from dockyard.services.node_agent.runc_driver import RuncDriver
from dockyard.services.node_agent.runc_options import add_runc_arguments, image_cache, refuse_without_runc
from dockyard.services.node_agent.usage import DEFAULT_INTERVAL as DEFAULT_USAGE_INTERVAL

NEEDS_DATABASE = False


def machine_memory() -> str:
    """Physical memory as a quantity, from /proc/meminfo (8Gi if it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1])}Ki"
    except (OSError, ValueError, IndexError):
        pass
    return "8Gi"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="the node's name")
    parser.add_argument("--driver", choices=("runc", "process", "hollow"), default="process",
                        help="runc: containers from images (root, runc needed); process: containers are local "
                             "processes; hollow: simulated")
    parser.add_argument("--labels", default="", help="node labels: k=v,k2=v2")
    parser.add_argument("--taints", default="", help="node taints: k=v:NoSchedule,k2:NoExecute")
    parser.add_argument("--cpu", default=None, help="cpu capacity (default: this machine's cores; hollow: 4)")
    parser.add_argument("--memory", default=None, help="memory capacity (default: this machine's; hollow: 8Gi)")
    parser.add_argument("--max-pods", type=int, default=110, help="pod capacity (default 110)")
    parser.add_argument("--state-dir", default=None,
                        help="where container state and logs live (default: DOCKYARD_HOME/nodes/NAME)")
    parser.add_argument("--heartbeat-interval", type=float, default=10.0, help="seconds between heartbeats")
    parser.add_argument("--usage-interval", type=float, default=DEFAULT_USAGE_INTERVAL,
                        help=f"seconds between resource usage reports (default {DEFAULT_USAGE_INTERVAL:g}; 0: none)")
    parser.add_argument("--backoff-base", type=float, default=10.0, help="first restart back-off, seconds")
    parser.add_argument("--backoff-max", type=float, default=300.0, help="longest restart back-off, seconds")
    parser.add_argument("--backoff-reset", type=float, default=600.0,
                        help="a run this long (seconds) forgets earlier crashes")
    parser.add_argument("--start-delay", type=float, default=DEFAULT_START_DELAY,
                        help="hollow driver: seconds from bound to Running")
    add_runc_arguments(parser)
    parser.add_argument("--keep-pods-on-exit", action="store_true",
                        help="leave the pods' processes running when the agent stops, for the next agent to adopt "
                             "(default: terminate them; after a crash they are always adopted)")


def node_from(args: argparse.Namespace):
    hollow = args.driver == "hollow"
    cpu = args.cpu or ("4" if hollow else str(os.cpu_count() or 1))
    memory = args.memory or ("8Gi" if hollow else machine_memory())
    return node_manifest(args.name, capacity(cpu, memory, args.max_pods), parse_labels(args.labels),
                         parse_taints(args.taints))


async def run(nats_url: str, database_url: str, stop: asyncio.Event, health: Health,
              args: argparse.Namespace) -> None:
    node = node_from(args)
    if args.driver == "runc":
        refuse_without_runc()
    log_ = await EventLog.connect(nats_url, name=f"dockyard-node-agent-{args.name}")
    try:
        if args.driver == "hollow":
            driver = HollowDriver(args.start_delay)
        else:
            state_dir = Path(args.state_dir) if args.state_dir else home() / "nodes" / args.name
            backoff = BackOff(base=args.backoff_base, maximum=args.backoff_max, reset_after=args.backoff_reset)
            config = ProcessDriverConfig(state_dir=state_dir, backoff=backoff)
            if args.driver == "runc":
                driver = RuncDriver(config, LogPublisher(log_), image_cache(args, state_dir))
            else:
                driver = ProcessDriver(config, LogPublisher(log_))
        agent = NodeAgent(log_, driver, [node], actor=f"system:node:{args.name}",
                          heartbeat_interval=args.heartbeat_interval, usage_interval=args.usage_interval,
                          stop_pods_on_exit=not args.keep_pods_on_exit)
        await agent.run(stop, health)
    finally:
        await log_.close()
