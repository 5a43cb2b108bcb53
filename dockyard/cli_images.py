"""`dockyard images`: what the registry holds, from the image index read model."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import msgspec
from sqlalchemy import text

from dockyard import cli, config, printers
from dockyard.db import async_engine
from dockyard.services.registry_indexer.pinning import ImageRef, parse_reference

HEADERS = ["REPOSITORY", "TAG", "DIGEST", "PLATFORMS", "SIZE", "AGE"]
WIDE_HEADERS = [*HEADERS, "REGISTRY", "MEDIA TYPE", "LAYERS"]
_COLUMNS = "registry, repository, tag, digest, media_type, size, platforms::text, problem, updated_at"


def add_parsers(sub) -> None:
    parser = sub.add_parser("images", help="images in the registry index: repositories, tags, digests, platforms",
                            usage="dockyard images [REPO] [-o table|wide|json|yaml]\n"
                                  "       dockyard images describe REPO:TAG|REPO@DIGEST")
    parser.add_argument("images_args", nargs="*", metavar="REPO", help="only this repository; or `describe REF`")
    parser.add_argument("-o", "--output", default="table", choices=["table", "wide", "json", "yaml"])


def parse_ref(ref: str) -> ImageRef:
    try:
        return parse_reference(ref)
    except ValueError as exc:
        raise cli.CliError(str(exc)) from None


def _row_dict(row: Any) -> dict[str, Any]:
    registry, repository, tag, digest, media_type, size, platforms, problem, updated_at = row
    return {"registry": registry, "repository": repository, "tag": tag, "digest": digest, "mediaType": media_type,
            "size": size, "platforms": msgspec.json.decode(platforms), "problem": problem,
            "updated": updated_at.isoformat().replace("+00:00", "Z")}


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{size}B"


def _platform_names(image: dict[str, Any]) -> str:
    names = ["/".join(p for p in (x.get("os", ""), x.get("architecture", ""), x.get("variant", "")) if p)
             for x in image["platforms"]]
    return ",".join(n for n in names if n) or "-"


def table_row(image: dict[str, Any], wide: bool) -> list[str]:
    if image["problem"]:
        row = [image["repository"], image["tag"] or "*", "<invalid>", "-", "-", printers.age(image["updated"])]
        return [*row, image["registry"], "-", "-"] if wide else row
    size = sum(p.get("size", 0) for p in image["platforms"])
    row = [image["repository"], image["tag"], image["digest"][:19], _platform_names(image), human_size(size),
           printers.age(image["updated"])]
    if wide:
        layers = ",".join(str(p.get("layers", 0)) for p in image["platforms"]) or "0"
        row += [image["registry"], image["mediaType"].rsplit("/", 1)[-1], layers]
    return row


async def _query(sql: str, params: dict[str, Any],
                 database_url: str | None = None) -> tuple[list[dict[str, Any]], list[Any]]:
    engine = async_engine(database_url or config.database_url(), pool_size=1)
    try:
        async with engine.connect() as conn:
            images = [_row_dict(r) for r in await conn.execute(text(sql), params)]
            registries = list(await conn.execute(text("SELECT registry, reachable, reason, since FROM registries"
                                                      " ORDER BY registry")))
    finally:
        await engine.dispose()
    return images, registries


def status_lines(images: list[dict[str, Any]], registries: list[Any]) -> list[str]:
    """What is wrong with the index: unreachable registries and the tags the registry answered garbage for."""
    lines = [f"registry {r}: unreachable since {s.isoformat(timespec='seconds')} ({reason})"
             for r, reachable, reason, s in registries if not reachable]
    lines += [f"{i['registry']}/{i['repository']}:{i['tag'] or '*'}: {i['problem']}" for i in images if i["problem"]]
    return lines


def _emit(data: Any, output: str) -> None:
    print(printers.to_json(data) if output == "json" else printers.to_yaml(data))


async def list_rows(repository: str = "",
                    database_url: str | None = None) -> tuple[list[dict[str, Any]], list[Any]]:
    """The index's tags (of one repository, or all) and the registries: what `dockyard images` lists."""
    where = "WHERE repository = :repo" if repository else ""
    return await _query(f"SELECT {_COLUMNS} FROM image_tags {where} ORDER BY repository, tag",
                        {"repo": repository} if repository else {}, database_url)


async def list_images(repository: str, output: str) -> int:
    images, registries = await list_rows(repository)
    if output in ("json", "yaml"):
        _emit({"images": images, "registries": [{"registry": r, "reachable": ok, "reason": why,
                                                 "since": s.isoformat()} for r, ok, why, s in registries]}, output)
        return 0
    wide = output == "wide"
    if images:
        print(printers.format_table(WIDE_HEADERS if wide else HEADERS, [table_row(i, wide) for i in images]))
    else:
        print(f"No images found{' in ' + repository if repository else ''}.", file=sys.stderr)
    for line in status_lines(images, registries):
        print(f"warning: {line}", file=sys.stderr)
    return 0


def describe_text(image: dict[str, Any]) -> str:
    lines = [f"Name:        {image['registry']}/{image['repository']}:{image['tag']}",
             f"Digest:      {image['digest']}", f"Media type:  {image['mediaType']}",
             f"Indexed:     {image['updated']}"]
    if image["problem"]:
        lines.append(f"Problem:     {image['problem']}")
    for p in image["platforms"]:
        lines += [f"Platform {_platform_names({'platforms': [p]})}:",
                  f"  Digest:       {p.get('digest', '')}", f"  Config:       {p.get('config_digest', '')}",
                  f"  Created:      {p.get('created', '') or '-'}",
                  f"  Layers:       {p.get('layers', 0)} ({human_size(p.get('size', 0))})",
                  f"  Entrypoint:   {' '.join(p.get('entrypoint', [])) or '-'}",
                  f"  Cmd:          {' '.join(p.get('cmd', [])) or '-'}",
                  f"  WorkingDir:   {p.get('working_dir', '') or '-'}", f"  User:         {p.get('user', '') or '-'}",
                  f"  Ports:        {', '.join(p.get('exposed_ports', [])) or '-'}",
                  f"  Env:          {', '.join(p.get('env', [])) or '-'}",
                  "  Labels:       " + (", ".join(f"{k}={v}" for k, v in p.get("labels", {}).items()) or "-")]
    return "\n".join(lines)


async def describe_image(reference: str, output: str) -> int:
    ref = parse_ref(reference)
    if ref.digest:
        sql = (f"SELECT {_COLUMNS} FROM image_tags WHERE repository = :repo AND (digest = :digest"
               f" OR platforms @> CAST(:member AS jsonb)) ORDER BY tag")
        params = {"repo": ref.repository, "digest": ref.digest,
                  "member": msgspec.json.encode([{"digest": ref.digest}]).decode()}
    else:
        sql = f"SELECT {_COLUMNS} FROM image_tags WHERE repository = :repo AND tag = :tag"
        params = {"repo": ref.repository, "tag": ref.tag}
    images, _ = await _query(sql, params)
    if not images:
        raise cli.CliError(f"image {reference!r} not found in the index")
    if output in ("json", "yaml"):
        _emit(images if ref.digest else images[0], output)
    else:
        print("\n\n".join(describe_text(i) for i in images))
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    words = args.images_args
    if words and words[0] == "describe":
        if len(words) != 2:
            raise cli.CliError("usage: dockyard images describe REPO:TAG|REPO@DIGEST")
        return asyncio.run(describe_image(words[1], args.output))
    if len(words) > 1:
        raise cli.CliError("usage: dockyard images [REPO] [-o table|wide|json|yaml]")
    return asyncio.run(list_images(words[0] if words else "", args.output))
