"""The registry indexer against a real docker-registry: webhook pushes, deletes, retags, outages, auth, the CLI."""

from __future__ import annotations

import asyncio
import json
import time

from dockyard.eventlog import kind_filter
from dockyard.servers import free_port
from tests.integration.test_cli import dockyard, ok
from tests.registry_fixtures import fake_registry, registry_factory, test_images  # noqa: F401 - fixtures

REPO = "team/web.app"


async def image_events(eventlog, kind: str = "image") -> list:
    return [r.event async for batch in eventlog.read_range(kind_filter(kind)) for r in batch]


async def wait_for_event(eventlog, predicate, kind: str = "image", timeout: float = 20.0):
    """The first event matching `predicate` (polling the log); fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in await image_events(eventlog, kind) if predicate(e)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no matching {kind} event in {await image_events(eventlog, kind)}"
        await asyncio.sleep(0.1)


def start_indexer(services, registry, webhook_port: int, *extra: str):
    """An indexer for `registry`, taking the notifications it sends (with its token) on `webhook_port`."""
    token = ("--webhook-token", registry.webhook_token) if registry.webhook_token else ()
    return services("registry-indexer", "--registry", registry.url, "--insecure", "--webhook-port",
                    str(webhook_port), "--probe-interval", "0.3", "--resync-interval", "3600", *token, *extra)


def of(type_name: str, tag: str = "", repository: str = REPO):
    return lambda e: e.type_name() == type_name and e.repository == repository and (not tag or e.tag == tag)


async def wait_for_rows(stack_env, count: int, *args: str, until=lambda rows: True) -> list[dict]:
    """`dockyard images` once it lists `count` rows that satisfy `until` (the projector folds events after
    the test sees them in the log), or what it lists after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        listing = json.loads(ok(dockyard(stack_env, "images", *args, "-o", "json")))
        if (len(listing["images"]) == count and until(listing["images"])) or time.monotonic() > deadline:
            return listing["images"]
        await asyncio.sleep(0.2)


async def test_push_retag_delete_through_the_webhook_and_the_cli(stack_env, services, eventlog, registry_factory,
                                                                  test_images):
    webhook = free_port()
    registry = registry_factory(webhook_url=f"http://127.0.0.1:{webhook}/notify")
    start_indexer(services, registry, webhook)

    test_images.push("v1", registry, f"{REPO}:v1")
    indexed = await wait_for_event(eventlog, of("image.indexed.v1", "v1"))
    assert indexed.digest == test_images.digest("v1") and indexed.registry == registry.address
    (platform,) = indexed.platforms
    assert (platform.os, platform.architecture, platform.layers) == ("linux", "amd64", 1)
    assert platform.entrypoint == ("/bin/busybox",) and platform.cmd == ("sh",)
    assert (platform.working_dir, platform.user, platform.exposed_ports) == ("/srv", "1000", ("8080/tcp",))
    assert platform.labels == {"org.example.app": "demo"} and platform.size > 500_000 and platform.created

    test_images.push("multi", registry, f"{REPO}:multi")
    multi = await wait_for_event(eventlog, of("image.indexed.v1", "multi"))
    assert multi.media_type == "application/vnd.oci.image.index.v1+json"
    assert [(p.os, p.architecture) for p in multi.platforms] == [("linux", "amd64"), ("linux", "arm64")]

    test_images.push("v2", registry, f"{REPO}:v1")  # a re-push: v1 now names another image
    moved = await wait_for_event(eventlog, of("image.tag_moved.v1", "v1"))
    assert (moved.previous_digest, moved.digest) == (test_images.digest("v1"), test_images.digest("v2"))
    assert "VERSION=2" in moved.platforms[0].env

    expected = {("v1", test_images.digest("v2")), ("multi", test_images.digest("multi"))}
    rows = await wait_for_rows(stack_env, 2, until=lambda rows: {(r["tag"], r["digest"]) for r in rows} == expected)
    assert {(r["tag"], r["digest"]) for r in rows} == expected
    table = ok(dockyard(stack_env, "images", REPO))
    assert "linux/amd64,linux/arm64" in table and test_images.digest("multi")[:19] in table
    described = ok(dockyard(stack_env, "images", "describe", f"{REPO}:v1"))
    assert "VERSION=2" in described and "/bin/busybox" in described
    arm_digest = multi.platforms[1].digest
    by_digest = json.loads(ok(dockyard(stack_env, "images", "describe", f"{REPO}@{arm_digest}", "-o", "json")))
    assert [image["tag"] for image in by_digest] == ["multi"]

    registry.delete_manifest(REPO, test_images.digest("multi"))
    deleted = await wait_for_event(eventlog, of("image.deleted.v1", "multi"))
    assert deleted.digest == test_images.digest("multi")
    assert [r["tag"] for r in await wait_for_rows(stack_env, 1)] == ["v1"]
    missing = dockyard(stack_env, "images", "describe", f"{REPO}:multi")
    assert missing.returncode == 1 and b"not found" in missing.stderr


async def test_a_restarted_indexer_appends_nothing_for_what_it_already_indexed(services, eventlog, registry_factory,
                                                                             test_images):
    registry = registry_factory()
    test_images.push("v1", registry, f"{REPO}:v1")
    test_images.push("multi", registry, "other:multi")
    indexer = start_indexer(services, registry, free_port())  # ready after its first crawl
    first = await image_events(eventlog)
    assert sorted((e.repository, e.tag) for e in first) == [("other", "multi"), (REPO, "v1")]
    indexer.stop()
    start_indexer(services, registry, free_port())
    await asyncio.sleep(0.5)
    assert await image_events(eventlog) == first


async def test_an_outage_is_recorded_and_the_resync_finds_what_changed(services, eventlog, registry_factory,
                                                                       test_images):
    webhook = free_port()
    registry = registry_factory(webhook_url=f"http://127.0.0.1:{webhook}/notify")
    test_images.push("v1", registry, f"{REPO}:v1")
    start_indexer(services, registry, webhook)
    await wait_for_event(eventlog, of("image.indexed.v1", "v1"))

    registry.stop()
    down = await wait_for_event(eventlog, lambda e: e.type_name() == "registry.unreachable.v1", kind="registry")
    assert down.registry == registry.address and down.reason

    # While it is down, another registry process on the same storage takes a push the indexer never hears of.
    from tests.registry_fixtures import RegistryServer

    side = RegistryServer(registry.root).start()
    try:
        test_images.push("multi", side, f"{REPO}:multi")
        test_images.push("v2", side, f"{REPO}:v1")
    finally:
        side.stop()
    registry.start()

    await wait_for_event(eventlog, lambda e: e.type_name() == "registry.recovered.v1", kind="registry")
    await wait_for_event(eventlog, of("image.indexed.v1", "multi"))
    moved = await wait_for_event(eventlog, of("image.tag_moved.v1", "v1"))
    assert moved.digest == test_images.digest("v2")


async def test_a_registry_with_basic_auth(services, eventlog, registry_factory, test_images, tmp_path):
    registry = registry_factory(users={"indexer": "s3cret"})
    test_images.push("v1", registry, f"{REPO}:v1", creds="indexer:s3cret")
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    start_indexer(services, registry, free_port(), "--username", "indexer", "--password-file", str(password))
    indexed = await wait_for_event(eventlog, of("image.indexed.v1", "v1"))
    assert indexed.digest == test_images.digest("v1")
    assert not [e for e in await image_events(eventlog, "registry") if e.type_name() == "registry.unreachable.v1"]


async def test_garbage_is_an_event_and_a_status_line_and_the_crawl_carries_on(stack_env, eventlog, fake_registry):
    from dockyard.services.registry_indexer.distribution import Registry
    from dockyard.services.registry_indexer.index import RegistryIndex
    from dockyard.services.registry_indexer.service import Indexer

    fake = fake_registry()
    good = fake.image(REPO, "good")
    fake.manifest(REPO, "html", b"<html>maintenance</html>", "text/html")
    fake.manifest(REPO, "cut", b'{"schemaVersion": 2, "lay')
    fake.catalog([REPO, "broken"], {REPO: ["good", "html", "cut"]})
    fake.routes["/v2/broken/tags/list"] = (200, {"Content-Type": "text/html"}, b"<html>oops</html>")
    registry = Registry(fake.url, insecure=True)
    indexer = Indexer(eventlog, registry, RegistryIndex(registry.name))
    try:
        await indexer.do(("crawl",))
        first = await image_events(eventlog)
        await indexer.do(("crawl",))
        assert await image_events(eventlog) == first  # the same garbage is not news
    finally:
        await registry.close()
    by_tag = {(e.repository, e.tag): e for e in first}
    assert by_tag[(REPO, "good")].digest == good
    assert "not JSON" in by_tag[(REPO, "html")].reason and "not JSON" in by_tag[(REPO, "cut")].reason
    assert by_tag[("broken", "")].type_name() == "image.rejected.v1"
    assert await image_events(eventlog, "registry") == []

    deadline = time.monotonic() + 20
    while True:
        listed = dockyard(stack_env, "images")
        if listed.stderr.count(b"warning:") == 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert b"good" in listed.stdout and b"<invalid>" in listed.stdout
    assert listed.stderr.count(b"warning:") == 3, listed.stderr


async def test_an_append_the_log_refuses_is_decided_again_by_the_next_crawl(eventlog, fake_registry):
    import dataclasses

    from dockyard.eventlog import STREAM
    from dockyard.services.registry_indexer.distribution import Registry
    from dockyard.services.registry_indexer.index import RegistryIndex
    from dockyard.services.registry_indexer.service import Indexer

    fake = fake_registry()
    digest = fake.image(REPO, "v1")
    fake.catalog([REPO], {REPO: ["v1"]})
    registry = Registry(fake.url, insecure=True)
    indexer = Indexer(eventlog, registry, RegistryIndex(registry.name))
    config = (await eventlog.js.stream_info(STREAM)).config
    try:
        # The log refuses every image event (too large for the stream): an error, not a lost race.
        await eventlog.js.update_stream(dataclasses.replace(config, max_msg_size=64))
        await indexer.do(("crawl",))
        assert await image_events(eventlog) == []
        assert indexer.index.tags == {}  # the index does not believe what the log refused

        await eventlog.js.update_stream(config)
        await indexer.do(("crawl",))
    finally:
        await registry.close()
    (indexed,) = await image_events(eventlog)
    assert indexed.type_name() == "image.indexed.v1" and indexed.digest == digest


def notify(port: int, repository: str, tag: str, authorization: str = "") -> int:
    """POST a push notification for `repository:tag` as a registry would; the HTTP status."""
    import urllib.error
    import urllib.request

    body = json.dumps({"events": [{"action": "push", "target": {"repository": repository, "tag": tag}}]}).encode()
    headers = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(f"http://127.0.0.1:{port}/notify", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_notifications_without_the_webhook_token_are_refused_and_ignored(services, eventlog, registry_factory,
                                                                               test_images):
    registry = registry_factory()  # no notifications of its own: the test posts them
    webhook = free_port()
    start_indexer(services, registry, webhook, "--webhook-token", "t0ken")
    test_images.push("v1", registry, f"{REPO}:forged")
    test_images.push("v1", registry, f"{REPO}:wrong")
    test_images.push("v1", registry, f"{REPO}:signed")

    assert notify(webhook, REPO, "forged") == 401
    assert notify(webhook, REPO, "wrong", authorization="Bearer guess") == 401
    assert notify(webhook, REPO, "signed", authorization="Bearer t0ken") == 200
    await wait_for_event(eventlog, of("image.indexed.v1", "signed"))
    # Work is done in arrival order, so had the refused ones been queued they would be indexed by now.
    assert [e.tag for e in await image_events(eventlog)] == ["signed"]


async def test_two_indexers_of_one_registry_record_each_change_once(nats_server, eventlog, registry_factory,
                                                                    test_images):
    from dockyard.eventlog import EventLog
    from dockyard.services.registry_indexer.distribution import Registry
    from dockyard.services.registry_indexer.service import Indexer, load_index

    registry = registry_factory()
    for tag in ("v1", "v2", "multi"):
        test_images.push(tag, registry, f"{REPO}:{tag}")
    test_images.push("v1", registry, "other:v1")

    async def indexer() -> Indexer:
        log_ = await EventLog.connect(nats_server.url)
        client = Registry(registry.url, insecure=True)
        return Indexer(log_, client, await load_index(log_, client.name))

    async def crawl_together(indexers: list[Indexer]) -> None:
        await asyncio.gather(*(i.do(("crawl",)) for i in indexers))

    both = [await indexer(), await indexer()]  # both start from the same (empty) index: every append races
    try:
        await crawl_together(both)
        indexed = await image_events(eventlog)
        assert sorted((e.repository, e.tag) for e in indexed) == [
            ("other", "v1"), (REPO, "multi"), (REPO, "v1"), (REPO, "v2")]

        test_images.push("v2", registry, f"{REPO}:v1")  # both see the move: one records it
        await crawl_together(both)
        moved = [e for e in await image_events(eventlog) if e.type_name() == "image.tag_moved.v1"]
        assert [(e.tag, e.digest) for e in moved] == [("v1", test_images.digest("v2"))]
        assert both[0].index.tags == both[1].index.tags
    finally:
        for i in both:
            await i.registry.close()
            await i.log.close()


def test_up_runs_the_indexer_for_the_registry_it_is_given(tmp_path, registry_factory, test_images):
    from tests.integration.test_stack import dockyard as in_home

    registry = registry_factory(users={"indexer": "s3cret"})
    test_images.push("v1", registry, f"{REPO}:v1", creds="indexer:s3cret")
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    home = tmp_path / "home"
    try:
        started = in_home(home, "up", "--detach", "--no-local-node", "--registry", registry.url, "--registry-insecure",
                          "--registry-username", "indexer", "--registry-password-file", str(password))
        assert started.returncode == 0, started.stderr.decode() + started.stdout.decode()
        deadline = time.monotonic() + 60
        while True:  # indexed by the first crawl, then projected
            listing = in_home(home, "images", "-o", "json")
            images = json.loads(listing.stdout or b'{"images": []}')["images"] if listing.returncode == 0 else []
            if images or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [(i["repository"], i["tag"], i["digest"]) for i in images] == [(REPO, "v1", test_images.digest("v1"))]
        status = in_home(home, "status").stdout.decode()
        assert any(line.split()[:2] == ["registry-indexer", "healthy"] for line in status.splitlines()), status
    finally:
        in_home(home, "down")


def test_up_refuses_registry_flags_that_cannot_work(tmp_path):
    from tests.integration.test_stack import dockyard as in_home

    home = tmp_path / "home"
    for args, message in [
        (("--registry-username", "u"), "--registry-username: needs --registry URL"),
        (("--registry", "http://x:5000", "--registry-password-file", str(tmp_path / "none")),
         "--registry-password-file: "),
    ]:
        refused = in_home(home, "up", "--detach", *args)
        assert refused.returncode == 1 and refused.stderr.decode().startswith(f"error: {message}"), refused.stderr
        assert b"Traceback" not in refused.stderr
    for command, url in [(("up", "--detach"), "ftp://x"), (("up", "--detach"), "not-a-url"),
                         (("up", "--detach"), "x:5000"), (("run", "registry-indexer"), "not-a-url")]:
        refused = in_home(home, *command, "--registry", url)  # argparse refuses it, as any bad flag: exit 2
        assert refused.returncode == 2, refused.stderr
        assert f'--registry: expected a URL such as http://127.0.0.1:5000, got "{url}"' in refused.stderr.decode()
    assert not (home / "stack.json").exists()
