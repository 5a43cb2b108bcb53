"""The node agent's flags for the runc driver: registry access, the image cache, refusing to start without runc."""

from __future__ import annotations

import argparse
from pathlib import Path

from dockyard.schemas.quantity import memory_bytes
from dockyard.services.node_agent.images import ImageCache, RegistryAccess, parse_registry_credentials
from dockyard.services.node_agent.runc_driver import RuncUnavailable, check_runc


def add_runc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry-credentials", action="append", default=[], metavar="HOST=USER:PASSWORD",
                        help="runc driver: credentials for a registry (repeatable)")
    parser.add_argument("--registry-auth-file", default="", metavar="PATH",
                        help="runc driver: registry credentials in containers-auth.json form (as `docker login` "
                             "or `skopeo login` write them), instead of putting passwords on the command line")
    parser.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                        help="runc driver: a registry reached over plain HTTP or unverified TLS (repeatable)")
    parser.add_argument("--image-cache-dir", default=None,
                        help="runc driver: the node's image cache (default: STATE_DIR/images)")
    parser.add_argument("--image-cache-budget", default="10Gi",
                        help="runc driver: disk the image cache may use before unused images are removed")


def image_cache(args: argparse.Namespace, state_dir: Path) -> ImageCache:
    """The cache the flags describe; SystemExit naming the flag when one is malformed."""
    try:
        credentials = parse_registry_credentials(args.registry_credentials)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    try:
        budget = memory_bytes(args.image_cache_budget)
    except (ValueError, ArithmeticError):
        raise SystemExit(f"error: --image-cache-budget {args.image_cache_budget!r}: expected a size "
                         f"such as 10Gi or 500Mi") from None
    auth_file = ""
    if args.registry_auth_file:
        path = Path(args.registry_auth_file).expanduser().resolve()
        if not path.is_file():
            raise SystemExit(f"error: --registry-auth-file {args.registry_auth_file}: not a readable file")
        auth_file = str(path)
    root = Path(args.image_cache_dir) if args.image_cache_dir else state_dir / "images"
    access = RegistryAccess(credentials=credentials, insecure=frozenset(args.insecure_registry), auth_file=auth_file)
    return ImageCache(root, access, budget)


def refuse_without_runc() -> None:
    try:
        check_runc()
    except RuncUnavailable as exc:
        raise SystemExit(f"error: {exc}") from None
