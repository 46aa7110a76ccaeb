"""``rph volumes list|create|delete``: network volumes, storage that outlives pods, in one data centre."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .common import EXIT_ERROR, Commands, client, confirmed, emit

if TYPE_CHECKING:
    from runpod_hybrid.controlplane import NetworkVolume


def _line(v: NetworkVolume) -> str:
    return f"{v.id:<14} {v.data_center_id:<10} {v.size_gb:>6} GB  {v.type or '-':<16} {v.name}"


def _list(args: argparse.Namespace) -> int:
    volumes = client(args).volumes.list()
    human = "\n".join(
        [_line(v) for v in volumes]
        + [f"{len(volumes)} network volume(s); pods using one run in its data centre"]
    )
    emit(args, volumes, human)
    return 0


def _create(args: argparse.Namespace) -> int:
    volume = client(args).volumes.create(args.name, size_gb=args.size_gb, data_center_id=args.data_center)
    emit(
        args,
        volume,
        f"created {volume.id} ({volume.size_gb} GB in {volume.data_center_id}); it bills per GB-month until "
        f"deleted. Use it with `rph pods create --network-volume {volume.id}`.",
    )
    return 0


def _delete(args: argparse.Namespace) -> int:
    if not confirmed(
        args,
        refusal=f"Deleting {args.volume} destroys its data for good.",
        prompt=f"Delete network volume {args.volume} and its data? Type {args.volume} to confirm: ",
        expected=args.volume,
    ):
        return EXIT_ERROR
    volume = client(args).volumes.delete(args.volume)
    emit(args, {"deleted": volume.id}, f"deleted network volume {volume.id} ({volume.name})")
    return 0


def add_commands(commands: Commands) -> None:
    volumes = commands.group("volumes", "network volumes: storage that outlives pods, in one data centre")
    volumes.command("list", "your network volumes and where they are", _list)
    create = volumes.command("create", "create a network volume (billed per GB-month until deleted)", _create)
    create.add_argument("name")
    create.add_argument("--size-gb", type=int, required=True, help="10 to 4096")
    create.add_argument("--data-center", required=True, help="data centre id, e.g. EU-RO-1")
    delete = volumes.command("delete", "delete a network volume and its data", _delete)
    delete.add_argument("volume", help="volume id or name")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
