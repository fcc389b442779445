"""How large a model this predictor may load: a share of its container's memory limit.

A hot reload holds the old model, the new file's bytes and XGBoost's parse of them at once, so
a model that fits a pod once can kill it on the next reload, and every replica that reloads it,
and each restarted pod again (a crash loop). So the largest model object is derived from the
memory the container may use, by default:

    (memory limit - RESERVE_BYTES) / RELOAD_COST

``RESERVE_BYTES`` (192 MiB) is what the process needs besides models: the interpreter and its
libraries (about 115 MB resident with a small model), the request bodies it may hold
(``MAX_BODY_BYTES_IN_FLIGHT``, 64 MiB) and the requests' working memory. ``RELOAD_COST`` (5) is
the reload's peak over that baseline as a multiple of the file's size, rounded up from what
was measured (bench/notes.md, "Memory during a hot reload": about 4.2 to 4.5 times the file for
UBJSON models of 100 and 250 MB). ``MAX_MODEL_BYTES`` (256 MiB by default) stays an upper bound
whatever the memory, and sets the limit where no memory limit is found. A JSON model costs
XGBoost about eleven times its size to parse, against about twice for UBJSON, so it may be at
most a quarter of the limit (``JSON_SHARE``).

The memory limit is ``MEMORY_LIMIT_BYTES`` if set (Kubernetes' downward API can pass
``limits.memory``), else read from the cgroup: v2's ``memory.max`` or v1's
``memory.limit_in_bytes``, of the process's own cgroup and each ancestor up to the mount (the
lowest wins). On a hybrid host (v1 controllers, a v2 tree beside them without the memory
controller) both are read. ``/proc/self/cgroup`` names the cgroup and ``/proc/self/mountinfo``
where each hierarchy is mounted and which of its paths the mount shows as its root (a
container sees its own cgroup there).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MIB = 1024 * 1024
# An upper bound whatever the memory (``MAX_MODEL_BYTES``): an upload of gigabytes by mistake
# must not be read at all.
DEFAULT_MAX_MODEL_BYTES = 256 * MIB
RESERVE_BYTES = 192 * MIB
RELOAD_COST = 5
JSON_SHARE = 4
NO_LIMIT = 1 << 60  # v1 writes "no limit" as the largest page-aligned 64-bit number


@dataclass(frozen=True)
class ModelLimit:
    """The largest model object to load, and the rule that set it (for refusals)."""

    bytes: int
    rule: str

    @property
    def json_bytes(self) -> int:
        return self.bytes // JSON_SHARE


DEFAULT_LIMIT = ModelLimit(DEFAULT_MAX_MODEL_BYTES, "MAX_MODEL_BYTES")


def limit_for(upper_bound: int, memory: int | None) -> ModelLimit:
    """The limit for ``memory`` bytes of container memory (None: no limit found), never above
    ``upper_bound`` (``MAX_MODEL_BYTES``)."""
    if memory is not None:
        derived = max(0, memory - RESERVE_BYTES) // RELOAD_COST
        if derived < upper_bound:
            return ModelLimit(
                derived,
                f"(memory limit {memory / MIB:,.0f} MiB - {RESERVE_BYTES // MIB} MiB) "
                f"/ {RELOAD_COST}",
            )
    return ModelLimit(upper_bound, "MAX_MODEL_BYTES")


@dataclass(frozen=True)
class _Mount:
    root: PurePosixPath  # the hierarchy's path the mount shows at its mount point
    point: Path


def cgroup_memory_limit(root: Path = Path("/")) -> int | None:
    """This process's container memory limit in bytes, or None where there is none (or no
    cgroup to read: not Linux, /proc or /sys not mounted). ``root`` is for tests."""
    try:
        memberships = (root / "proc/self/cgroup").read_text().splitlines()
        mounts = (root / "proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    v2, v1 = _mounts(mounts, root)
    limits = []
    for line in memberships:
        number, controllers, path = line.split(":", 2)
        if number == "0" and controllers == "" and v2 is not None:
            limits += _limits(v2, PurePosixPath(path), "memory.max")
        elif "memory" in controllers.split(",") and v1 is not None:
            limits += _limits(v1, PurePosixPath(path), "memory.limit_in_bytes")
    return min(limits, default=None)


def _mounts(lines: list[str], root: Path) -> tuple[_Mount | None, _Mount | None]:
    """The cgroup v2 mount and the v1 memory controller's mount, where there are."""
    v2 = v1 = None
    for line in lines:
        fields, _, after = line.partition(" - ")
        parts, kind = fields.split(), after.split()
        if len(parts) < 5 or len(kind) < 3:
            continue
        mount = _Mount(PurePosixPath(parts[3]), root / parts[4].lstrip("/"))
        if kind[0] == "cgroup2":
            v2 = v2 or mount
        elif kind[0] == "cgroup" and "memory" in kind[2].split(","):
            v1 = v1 or mount
    return v2, v1


def _limits(mount: _Mount, cgroup: PurePosixPath, name: str) -> list[int]:
    """The limits set in ``name`` from ``cgroup``'s directory up to the mount point."""
    return [limit for folder in _folders(mount, cgroup) if (limit := _read(folder / name))]


def _folders(mount: _Mount, cgroup: PurePosixPath) -> Iterator[Path]:
    try:
        relative = cgroup.relative_to(mount.root)
    except ValueError:  # a path outside what the mount shows: only the mount's own is known
        relative = PurePosixPath()
    folder = mount.point / relative
    while True:
        yield folder
        if folder == mount.point or folder == folder.parent:
            return
        folder = folder.parent


def _read(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) >= NO_LIMIT:  # "max" (v2) or the v1 maximum
        return None
    return int(text)
