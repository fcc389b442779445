"""The model size limit follows the container's memory limit, read from cgroup v2, v1 or a
hybrid of both, wherever the hierarchy is mounted."""

from __future__ import annotations

from pathlib import Path

import pytest

from retail_serving.memory import (
    DEFAULT_MAX_MODEL_BYTES,
    MIB,
    RELOAD_COST,
    RESERVE_BYTES,
    cgroup_memory_limit,
    limit_for,
)

V2_MOUNT = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw"
V1_MEMORY_MOUNT = "33 27 0:29 {root} /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory"
HYBRID_V2_MOUNT = "31 27 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate"
UNLIMITED_V1 = str(9223372036854771712)


def host(tmp_path: Path, cgroup: str, mounts: list[str], files: dict[str, str]) -> Path:
    """A fake root: /proc/self/cgroup, /proc/self/mountinfo and the cgroup files given."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    (tmp_path / "proc/self/mountinfo").write_text("\n".join(mounts) + "\n")
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    return tmp_path


def test_cgroup_v2_reads_the_lowest_memory_max_up_to_the_mount(tmp_path: Path) -> None:
    root = host(
        tmp_path,
        "0::/kubepods/pod1/predictor\n",
        [V2_MOUNT],
        {
            "sys/fs/cgroup/memory.max": "max",
            "sys/fs/cgroup/kubepods/memory.max": str(8 << 30),
            "sys/fs/cgroup/kubepods/pod1/memory.max": str(1 << 30),  # the pod's limit
            "sys/fs/cgroup/kubepods/pod1/predictor/memory.max": "max",
        },
    )
    assert cgroup_memory_limit(root) == 1 << 30


def test_a_container_with_its_own_cgroup_namespace_sees_its_cgroup_as_the_root(
    tmp_path: Path,
) -> None:
    root = host(tmp_path, "0::/\n", [V2_MOUNT], {"sys/fs/cgroup/memory.max": str(512 * MIB)})
    assert cgroup_memory_limit(root) == 512 * MIB


def test_cgroup_v1_mounted_at_the_containers_own_cgroup(tmp_path: Path) -> None:
    """Docker without a cgroup namespace: /proc/self/cgroup names the host's path, and the
    mount shows that path at its mount point."""
    path = "/docker/abc123"
    root = host(
        tmp_path,
        f"4:memory:{path}\n3:cpu,cpuacct:{path}\n",
        [V1_MEMORY_MOUNT.format(root=path)],
        {"sys/fs/cgroup/memory/memory.limit_in_bytes": str(768 * MIB)},
    )
    assert cgroup_memory_limit(root) == 768 * MIB


def test_a_hybrid_host_reads_v1s_memory_controller_beside_a_v2_tree_without_it(
    tmp_path: Path,
) -> None:
    """This project's test VM: v1 controllers, v2's tree at /sys/fs/cgroup/unified with no
    memory files."""
    path = "/process_api/7a1c"
    root = host(
        tmp_path,
        f"9:name=systemd:/\n4:memory:{path}\n0::/\n",
        [HYBRID_V2_MOUNT, V1_MEMORY_MOUNT.format(root="/")],
        {
            "sys/fs/cgroup/memory/memory.limit_in_bytes": UNLIMITED_V1,
            f"sys/fs/cgroup/memory{path}/memory.limit_in_bytes": str(2 << 30),
            "sys/fs/cgroup/unified/cgroup.procs": "1",
        },
    )
    assert cgroup_memory_limit(root) == 2 << 30


@pytest.mark.parametrize(
    ("cgroup", "mounts", "files"),
    [
        ("0::/a\n", [V2_MOUNT], {"sys/fs/cgroup/a/memory.max": "max"}),
        (
            "4:memory:/\n",
            [V1_MEMORY_MOUNT.format(root="/")],
            {"sys/fs/cgroup/memory/memory.limit_in_bytes": UNLIMITED_V1},
        ),
        ("0::/a\n", [], {}),  # no cgroup file system mounted
        ("4:memory:/\n", [V1_MEMORY_MOUNT.format(root="/")], {}),  # no file to read
    ],
    ids=["v2 max", "v1 unlimited", "nothing mounted", "no files"],
)
def test_no_limit_is_none(
    tmp_path: Path, cgroup: str, mounts: list[str], files: dict[str, str]
) -> None:
    assert cgroup_memory_limit(host(tmp_path, cgroup, mounts, files)) is None


def test_no_proc_is_no_limit(tmp_path: Path) -> None:
    assert cgroup_memory_limit(tmp_path) is None


def test_this_machine_is_read_without_error() -> None:
    limit = cgroup_memory_limit()
    assert limit is None or limit > 0


def test_the_limit_is_a_share_of_the_memory_left_after_the_reserve() -> None:
    limit = limit_for(DEFAULT_MAX_MODEL_BYTES, 1 << 30)
    assert limit.bytes == ((1 << 30) - RESERVE_BYTES) // RELOAD_COST  # about 166 MiB
    assert limit.rule == "(memory limit 1,024 MiB - 192 MiB) / 5"
    assert limit.json_bytes == limit.bytes // 4


def test_max_model_bytes_bounds_the_limit_and_sets_it_without_a_memory_limit() -> None:
    assert limit_for(DEFAULT_MAX_MODEL_BYTES, 4 << 30).bytes == DEFAULT_MAX_MODEL_BYTES
    assert limit_for(DEFAULT_MAX_MODEL_BYTES, 4 << 30).rule == "MAX_MODEL_BYTES"
    assert limit_for(10 * MIB, None).bytes == 10 * MIB
    assert limit_for(10 * MIB, 1 << 30).rule == "MAX_MODEL_BYTES"  # lower than the rule's
    assert limit_for(10 * MIB, 100 * MIB).bytes == 0  # less memory than the reserve: nothing
