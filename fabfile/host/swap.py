"""A swap file (``[host] swap``): a small VPS gets one instead of meeting the OOM killer.

``auto`` (the default) makes ``/swapfile`` when the host has under 2 GiB of memory
and no swap at all, as large as its memory rounded up to a GiB; a size (``512M``,
``2G``) makes one of that size whenever the host has no swap; ``off`` leaves swap
alone. The file is written with ``dd`` (``swapon`` refuses files with holes on some
filesystems), made 0600, formatted with ``mkswap``, put in ``/etc/fstab`` and turned
on. A container may not turn swap on (``swapon``: "Operation not permitted"): then
bootstrap-host says so and goes on; the file and the fstab line are there for a host
that boots with them. Nothing here resizes or removes a swap file.
"""
from __future__ import annotations

import math

from invoke import Exit

from .. import commands
from ..config.hostconfig import HostConfig
from .plan import Change, Plan

SWAP_FILE = "/swapfile"
FSTAB = "/etc/fstab"
FSTAB_LINE = f"{SWAP_FILE} none swap sw 0 0"
SMALL_MEMORY = 2 * 2**30
GiB, MiB = 2**30, 2**20
ROOM_LEFT = 512 * MiB  # free space the file must leave on its filesystem


def decide(setting: str | int, memory: int, swap: int) -> tuple[int | None, str]:
    """The size of swap file to make (None: none) and why, from ``[host] swap``, the host's memory
    and the swap it has, in bytes."""
    if setting == "off":
        return None, "swap = off"
    if swap:
        return None, f"the host has {size_text(swap)} of swap"
    if setting == "auto":
        if memory >= SMALL_MEMORY:
            return None, f"no swap file needed: {size_text(memory)} of memory"
        return max(1, math.ceil(memory / GiB)) * GiB, f"{size_text(memory)} of memory and no swap"
    return int(setting), "no swap"


def size_text(size: int) -> str:
    return f"{size / GiB:.1f} GiB" if size >= GiB else f"{size // MiB} MiB"


def make_file(size: int) -> str:
    fstab = f"grep -qxF {commands.join(FSTAB_LINE)} {FSTAB} || {commands.append_line(FSTAB, FSTAB_LINE)}"
    return commands.and_then(
        commands.join("rm", "-f", SWAP_FILE), commands.join("install", "-m", "0600", "/dev/null", SWAP_FILE),
        commands.join("dd", "if=/dev/zero", f"of={SWAP_FILE}", "bs=1M", f"count={size // MiB}", "status=none"),
        commands.join("mkswap", SWAP_FILE), fstab)


def plan_swap(config: HostConfig, facts: dict, plan: Plan) -> None:
    if config.swap == "off":
        return
    memory = facts["memory"]
    found = facts["paths"].get(SWAP_FILE)
    listed = FSTAB_LINE in (facts["files"].get(FSTAB) or "").splitlines()
    if found and found["kind"] == "file" and listed:
        on = SWAP_FILE in memory["swaps"]
        plan.checked.append(f"swap file {SWAP_FILE} ({size_text(found['size'])}) in {FSTAB}" +
                            ("" if on else f", not on (swapon {SWAP_FILE}: refused in a container)"))
        return
    size, why = decide(config.swap, memory["total"], memory["swap"])
    if size is None:
        plan.checked.append(why)
        return
    free = facts["swap_space"]["free"]
    if free < size + ROOM_LEFT:
        message = (f"no room for a swap file of {size_text(size)} on {config.address} ({size_text(free)} free "
                   f"in /; {size_text(ROOM_LEFT)} must stay free)")
        if config.swap == "auto":
            plan.checked.append(message)
            return
        raise Exit(f"{config.path}: [host] swap: {message}; choose a smaller size, or swap = off", 1)
    plan.changes.append(Change(f"make a swap file {SWAP_FILE} of {size_text(size)} ({why}; in {FSTAB})",
                               make_file(size)))
    plan.changes.append(Change(f"turn on the swap file {SWAP_FILE}", commands.join("swapon", SWAP_FILE),
                               may_fail=f"swapon was refused (in a container, swap is the host's to give); "
                                        f"{SWAP_FILE} is in {FSTAB} for a machine that boots with it"))
