"""Registry indexer figures against a local docker-registry: full crawl time, manifests/s, push -> indexed.

    .venv/bin/python bench/registry.py [--repositories 1000] [--tags 5] [--pushes 200] [--concurrency 32]

Starts nats-server and Debian's docker-registry in a temporary directory on free 127.0.0.1
ports; fills the registry through its HTTP API directly (blob upload once, cross-repository
mounts, manifest PUTs: far faster than skopeo for thousands of manifests), then prints
figures, one a line, each with its unit:

1. a full crawl into an empty index (every tag fetched, every digest checked, every config
   read, one event per tag appended): seconds and manifests/s;
2. a re-crawl of the unchanged registry (appends nothing): seconds;
3. push -> indexed: a manifest PUT until its `image.indexed.v1` is in the log, through the
   registry's notification to the indexer's webhook: p50 and p99 over --pushes pushes.

Figures, not assertions. The goals (issue 4): the crawl under 60 s, push -> indexed p99 under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # for tests.registry_fixtures

import httpx  # noqa: E402

from dockyard.eventlog import EventLog, kind_filter  # noqa: E402
from dockyard.servers import NatsServer, free_port  # noqa: E402
from dockyard.services.registry_indexer.distribution import Registry  # noqa: E402
from dockyard.services.registry_indexer.index import RegistryIndex  # noqa: E402
from dockyard.services.registry_indexer.service import Indexer, serve_webhook  # noqa: E402
from tests.registry_fixtures import OCI_MANIFEST, RegistryServer  # noqa: E402

CONFIG = json.dumps({"os": "linux", "architecture": "amd64", "config": {"Cmd": ["sh"]}}).encode()
LAYER = b"\x1f\x8b" + bytes(range(256)) * 64  # contents do not matter to the registry, only the digest


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def manifest_body(note: str) -> bytes:
    """A distinct manifest per (repository, tag) by its annotation; all share one config and one layer."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(CONFIG),
                   "size": len(CONFIG)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest_of(LAYER),
                    "size": len(LAYER)}],
        "annotations": {"org.example.note": note},
    }).encode()


async def upload_blob(http: httpx.AsyncClient, repository: str, body: bytes, source: str = "") -> None:
    digest = digest_of(body)
    if source:  # a cross-repository mount: no bytes travel
        response = await http.post(f"/v2/{repository}/blobs/uploads/", params={"mount": digest, "from": source})
        if response.status_code == 201:
            return
    start = await http.post(f"/v2/{repository}/blobs/uploads/")
    start.raise_for_status()
    location = httpx.URL(start.headers["location"]).copy_merge_params({"digest": digest})  # keeps its _state
    done = await http.put(location, content=body,
                          headers={"Content-Type": "application/octet-stream"})
    done.raise_for_status()


async def put_manifest(http: httpx.AsyncClient, repository: str, tag: str, note: str) -> None:
    response = await http.put(f"/v2/{repository}/manifests/{tag}", content=manifest_body(note),
                              headers={"Content-Type": OCI_MANIFEST})
    response.raise_for_status()


async def fill(url: str, repositories: int, tags: int, concurrency: int) -> float:
    started = time.perf_counter()
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        first = "bench/r0000"
        for blob in (CONFIG, LAYER):
            await upload_blob(http, first, blob)

        async def one(i: int) -> None:
            repository = f"bench/r{i:04d}"
            async with slots:
                if i:
                    for blob in (CONFIG, LAYER):
                        await upload_blob(http, repository, blob, source=first)
                for t in range(tags):
                    await put_manifest(http, repository, f"t{t}", f"{repository}:{t}")

        await asyncio.gather(*(one(i) for i in range(repositories)))
    return time.perf_counter() - started


async def crawl_once(log: EventLog, url: str, index: RegistryIndex, concurrency: int) -> tuple[float, Indexer]:
    registry = Registry(url, insecure=True, concurrency=concurrency)
    indexer = Indexer(log, registry, index)
    started = time.perf_counter()
    await indexer.do(("crawl",))
    return time.perf_counter() - started, indexer


async def push_to_indexed(log: EventLog, indexer: Indexer, url: str, webhook_port: int, pushes: int) -> list[float]:
    server = await serve_webhook(indexer, "127.0.0.1", webhook_port)
    stop = asyncio.Event()
    worker = asyncio.create_task(indexer.work_loop(stop))
    arrived: dict[str, float] = {}
    waiting: dict[str, asyncio.Event] = {}

    async def on_event(msg) -> None:
        tag = json.loads(msg.data).get("tag", "")
        arrived[tag] = time.perf_counter()
        if tag in waiting:
            waiting[tag].set()

    sub = await log.nc.subscribe(kind_filter("image"), cb=on_event)
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for i in range(pushes):
            tag = f"push{i}"
            waiting[tag] = asyncio.Event()
            pushed = time.perf_counter()  # before the PUT: Distribution may notify before it answers
            await put_manifest(http, "bench/r0000", tag, f"push {i}")
            await asyncio.wait_for(waiting[tag].wait(), 30)
            latencies.append(arrived[tag] - pushed)
    await sub.unsubscribe()
    stop.set()
    worker.cancel()
    server.close()
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="dy-bench-reg-", dir="/tmp"))
    nats_server = NatsServer(root / "nats")
    nats_server.start()
    webhook_port = free_port()
    registry = RegistryServer(root)  # no notifications while filling: they would queue up behind a closed port
    registry.start()
    try:
        filled = await fill(registry.url, args.repositories, args.tags, args.concurrency)
        manifests = args.repositories * args.tags
        print(f"registry filled: {manifests} manifests in {args.repositories} repositories in {filled:.1f} s")
        log = await EventLog.connect(nats_server.url)
        await log.ensure_streams()
        index = RegistryIndex(registry.address)
        seconds, indexer = await crawl_once(log, registry.url, index, args.concurrency)
        indexed = len(index.tags)
        print(f"full crawl: {seconds:.2f} s (goal: < 60 s)")
        print(f"full crawl: {indexed / seconds:.0f} manifests/s ({indexed} tags indexed)")
        await indexer.registry.close()
        seconds, indexer = await crawl_once(log, registry.url, index, args.concurrency)
        print(f"re-crawl, nothing changed: {seconds:.2f} s")
        registry.stop()
        registry.webhook_url = f"http://127.0.0.1:{webhook_port}/notify"
        registry.start()
        latencies = await push_to_indexed(log, indexer, registry.url, webhook_port, args.pushes)
        print(f"push -> indexed p50: {percentile(latencies, 0.5) * 1000:.1f} ms")
        print(f"push -> indexed p99: {percentile(latencies, 0.99) * 1000:.1f} ms (goal: < 1000 ms)")
        print(f"push -> indexed max: {max(latencies) * 1000:.1f} ms over {len(latencies)} pushes")
        await indexer.registry.close()
        await log.close()
    finally:
        registry.stop()
        nats_server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repositories", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=5)
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    asyncio.run(main(parser.parse_args()))
