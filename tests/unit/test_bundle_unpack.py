"""Hostile image layers cannot reach outside the bundle on unpack (real umoci, as root)."""

from __future__ import annotations

import os
import stat
import tarfile

import pytest

from dockyard.services.node_agent.bundle import Security, unpack
from tests.runc_fixtures import add_entry, add_file, layout_with_layers, require_runc, tar_layer


@pytest.fixture(autouse=True)
def _needs_root_and_umoci():
    require_runc()


async def unpack_layers(tmp_path, *layers: bytes, security: Security = Security()):
    layout = layout_with_layers(tmp_path / "layout", list(layers))
    bundle = tmp_path / "bundles" / "c"
    bundle.parent.mkdir(parents=True)
    await unpack(layout, "img", bundle, security)
    return bundle / "rootfs"


def outside(tmp_path) -> list[str]:
    """What exists in tmp_path besides the layout and the bundle."""
    return sorted(p.name for p in tmp_path.iterdir() if p.name not in ("layout", "bundles"))


async def test_dot_dot_paths_stay_inside(tmp_path):
    def hostile(tar: tarfile.TarFile) -> None:
        add_file(tar, "../../escaped-file", b"out")
        add_file(tar, "etc/../../../escaped-too", b"out")
        add_file(tar, "ok", b"in")

    rootfs = await unpack_layers(tmp_path, tar_layer(hostile))
    assert outside(tmp_path) == []
    assert (rootfs / "ok").read_bytes() == b"in"


async def test_absolute_symlinks_are_resolved_inside_the_rootfs(tmp_path):
    target = tmp_path / "victim"
    target.mkdir()

    def hostile(tar: tarfile.TarFile) -> None:
        add_entry(tar, "link", tarfile.SYMTYPE, linkname=str(target))
        add_entry(tar, "up", tarfile.SYMTYPE, linkname="../../../../../../" + str(target))

    def through(tar: tarfile.TarFile) -> None:  # a later layer writes through the links
        add_file(tar, "link/planted", b"evil")
        add_file(tar, "up/planted2", b"evil")

    rootfs = await unpack_layers(tmp_path, tar_layer(hostile), tar_layer(through))
    assert list(target.iterdir()) == []
    assert os.readlink(rootfs / "link") == str(target)  # kept as a link, which means the path inside
    assert outside(tmp_path) == ["victim"]


async def test_device_nodes_are_not_created(tmp_path):
    def hostile(tar: tarfile.TarFile) -> None:
        add_entry(tar, "dev/", tarfile.DIRTYPE)
        add_entry(tar, "dev/sda-copy", tarfile.BLKTYPE, mode=0o666, devmajor=8, devminor=0)
        add_entry(tar, "dev/mem-copy", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=1)
        add_file(tar, "dev/plain", b"file")

    rootfs = await unpack_layers(tmp_path, tar_layer(hostile))
    assert sorted(p.name for p in (rootfs / "dev").iterdir()) == ["plain"]


@pytest.mark.parametrize(("allow", "setuid_left"), [(False, False), (True, True)], ids=["no-escalation", "allowed"])
async def test_setuid_bits_are_stripped_when_privilege_escalation_is_not_allowed(tmp_path, allow, setuid_left):
    def layer(tar: tarfile.TarFile) -> None:
        add_file(tar, "bin/su-like", b"#!/bin/sh\n", mode=0o4755)
        add_file(tar, "bin/sg-like", b"#!/bin/sh\n", mode=0o2755)

    rootfs = await unpack_layers(tmp_path, tar_layer(layer), security=Security(allow_privilege_escalation=allow))
    for name in ("su-like", "sg-like"):
        mode = (rootfs / "bin" / name).stat().st_mode
        assert bool(mode & (stat.S_ISUID | stat.S_ISGID)) is setuid_left
        assert mode & 0o755 == 0o755
