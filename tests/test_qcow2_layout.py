"""qcow2 metadata for layouts too big to fill with data in a test: qemu-img check reads it all."""

from __future__ import annotations

from array import array
from pathlib import Path

import pytest
from conftest import GIB, qemu_check, qemu_info

from boxpack.formats.qcow2 import REFBLOCK_ENTRIES, HeaderV2, HeaderV3Tail, Qcow2Layout


def _write_metadata_only(layout: Qcow2Layout, path: Path) -> None:
    """The tables as they stream, then the data area left as a hole."""
    with open(path, "wb") as f:
        for chunk in layout.metadata():
            f.write(chunk)
        assert f.tell() == layout.data_offset
        f.truncate(layout.image_size)


@pytest.mark.parametrize("version", [3, 2])
@pytest.mark.parametrize(
    "clusters",
    [
        range(0),
        range(REFBLOCK_ENTRIES - 40, REFBLOCK_ENTRIES + 40),  # refcount metadata crossing a refblock boundary
        range(0, 3 * REFBLOCK_ENTRIES, 7),  # several refblocks, many L2 tables
        range(3_000_000, 3_200_000, 97),  # sparse data far into a 200 GiB disk
    ],
)
def test_layout_passes_qemu_check(tmp_path: Path, clusters: range, version: int) -> None:
    layout = Qcow2Layout(200 * GIB + 512, array("Q", clusters), version)
    image = tmp_path / "meta.qcow2"
    _write_metadata_only(layout, image)
    report = qemu_check(image, "qcow2")
    assert report.get("allocated-clusters", 0) == len(clusters)
    assert report["image-end-offset"] == layout.image_size
    assert qemu_info(image)["virtual-size"] == 200 * GIB + 512


def test_refcount_fixed_point_counts_itself() -> None:
    """The number of clusters that makes the refblocks tip over to one more block."""
    for n in range(REFBLOCK_ENTRIES - 10, REFBLOCK_ENTRIES + 2):
        layout = Qcow2Layout(GIB * 1024, array("Q", range(n)))
        assert layout.refblocks * REFBLOCK_ENTRIES >= layout.host_clusters


def test_header_round_trips_through_construct() -> None:
    layout = Qcow2Layout(GIB, array("Q", [0, 5]))
    head = layout.header()
    v2 = HeaderV2.parse(head)
    tail = HeaderV3Tail.parse(head[HeaderV2.sizeof():])
    assert (v2.version, v2.cluster_bits, v2.size, v2.l1_size) == (3, 16, GIB, 2)
    assert (tail.header_length, tail.refcount_order, tail.incompatible_features) == (112, 4, 0)
    assert HeaderV2.sizeof() + HeaderV3Tail.sizeof() == 112
