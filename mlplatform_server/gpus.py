"""The NVIDIA GPUs of this machine, for what runs work on it directly: the process backend's runs
and deployments, and the local hub's hardware form.

``nvidia-smi -L`` is the source (it needs only the driver, not CUDA). When the platform itself was
started with ``CUDA_VISIBLE_DEVICES``, only those GPUs are the platform's to hand out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

NO_GPU_REASON = "no NVIDIA GPU on this machine (nvidia-smi not found or failing)"

_LINE = re.compile(r"^GPU (?P<index>\d+): (?P<name>.*?) \(UUID: (?P<uuid>[^)]+)\)")


@dataclass(frozen=True)
class Gpu:
    index: int  # as nvidia-smi numbers it (PCI bus order)
    name: str
    uuid: str  # what CUDA_VISIBLE_DEVICES names it by, whatever the device order


def parse_nvidia_smi_list(text: str) -> list[Gpu]:
    """The GPUs in ``nvidia-smi -L`` output (lines ``GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-…)``)."""
    gpus = []
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match:
            gpus.append(Gpu(int(match["index"]), match["name"], match["uuid"]))
    return gpus


def restrict_to_visible(gpus: list[Gpu], visible: str | None) -> list[Gpu]:
    """Those of ``gpus`` that a ``CUDA_VISIBLE_DEVICES`` value names (indices or UUIDs), in its
    order; all of them when it is unset. CUDA stops at the first entry it cannot resolve; so does this."""
    if visible is None:
        return list(gpus)
    chosen: list[Gpu] = []
    for entry in (e.strip() for e in visible.split(",")):
        match = next((g for g in gpus if entry == str(g.index) or (entry and g.uuid.startswith(entry))), None)
        if match is None:
            break
        if match not in chosen:
            chosen.append(match)
    return chosen


@lru_cache(maxsize=1)
def machine_gpus() -> tuple[Gpu, ...]:
    """This machine's GPUs that the platform may use (none without a working ``nvidia-smi``)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=15, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(restrict_to_visible(parse_nvidia_smi_list(out), os.environ.get("CUDA_VISIBLE_DEVICES")))


def shortage(size_name: str, wanted: int, available: int) -> str | None:
    """Why a hardware size asking for ``wanted`` GPUs cannot run here, or None."""
    if wanted <= available:
        return None
    plural = "GPU" if wanted == 1 else "GPUs"
    have = NO_GPU_REASON if available == 0 else f"this machine has {available}"
    return f"hardware size {size_name} asks for {wanted} {plural}, but {have}"
