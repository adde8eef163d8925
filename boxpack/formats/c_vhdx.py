"""VHDX on-disk structures, GUIDs and constants.

References: Microsoft [MS-VHDX] "Virtual Hard Disk v2 (VHDX) File Format"
(sections 2.2 header, 2.2.3 region table, 2.3 log, 2.5 BAT, 2.6 metadata);
qemu block/vhdx.h and block/vhdx.c. Fields are little-endian; GUIDs are stored
in Microsoft's mixed-endian layout (uuid.UUID.bytes_le).
"""

from __future__ import annotations

import uuid

from construct import Bytes, Int16ul, Int32ul, Int64ul, Struct

KIB, MIB = 1024, 1024 * 1024
FILE_SIGNATURE = b"vhdxfile"
HEADER_OFFSETS = (64 * KIB, 128 * KIB)
HEADER_SIZE = 4 * KIB  # the checksum covers the first 4 KiB of the 64 KiB header block
REGION_TABLE_OFFSETS = (192 * KIB, 256 * KIB)
REGION_TABLE_SIZE = 64 * KIB
METADATA_TABLE_SIZE = 64 * KIB
MAX_REGION_ENTRIES = 2047
MAX_METADATA_ENTRIES = 2047
MAX_SECTORS_PER_BLOCK = 1 << 23
LOG_SIGNATURE = b"loge"


def _guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


BAT_GUID = _guid("2dc27766-f623-4200-9d64-115e9bfd4a08")
METADATA_GUID = _guid("8b7ca206-4790-4b9a-b8fe-575f050f886e")
FILE_PARAMETERS_GUID = _guid("caa16737-fa36-4d43-b3b6-33f0aa44e76b")
VIRTUAL_DISK_SIZE_GUID = _guid("2fa54224-cd1b-4876-b211-5dbed83bf4b8")
PAGE83_GUID = _guid("beca12ab-b2e6-4523-93ef-c309e000c746")
LOGICAL_SECTOR_SIZE_GUID = _guid("8141bf1d-a96f-4709-ba47-f233a8faab5f")
PHYSICAL_SECTOR_SIZE_GUID = _guid("cda348c7-445d-4471-9cc9-e9885251c556")
PARENT_LOCATOR_GUID = _guid("a8d35f2d-b30b-454d-abf7-d3d84834ab0c")
KNOWN_METADATA = {FILE_PARAMETERS_GUID, VIRTUAL_DISK_SIZE_GUID, PAGE83_GUID, LOGICAL_SECTOR_SIZE_GUID,
                  PHYSICAL_SECTOR_SIZE_GUID, PARENT_LOCATOR_GUID}
REGION_REQUIRED = 1
METADATA_REQUIRED = 4
PARAMS_LEAVE_BLOCKS_ALLOCATED = 1
PARAMS_HAS_PARENT = 2

# Payload block states (BAT entry bits 0-2); the file offset is in bits 20-63, in MiB.
PAYLOAD_NOT_PRESENT, PAYLOAD_UNDEFINED, PAYLOAD_ZERO = 0, 1, 2
PAYLOAD_UNMAPPED, PAYLOAD_FULLY_PRESENT, PAYLOAD_PARTIALLY_PRESENT = 5, 6, 7
BAT_STATE_MASK = 7
BAT_OFFSET_SHIFT = 20

Header = Struct(
    "signature" / Bytes(4),  # "head"
    "checksum" / Int32ul,
    "sequence_number" / Int64ul,
    "file_write_guid" / Bytes(16),
    "data_write_guid" / Bytes(16),
    "log_guid" / Bytes(16),
    "log_version" / Int16ul,
    "version" / Int16ul,
    "log_length" / Int32ul,
    "log_offset" / Int64ul,
)

RegionTableHeader = Struct("signature" / Bytes(4), "checksum" / Int32ul, "entry_count" / Int32ul, "reserved" / Int32ul)
RegionTableEntry = Struct("guid" / Bytes(16), "file_offset" / Int64ul, "length" / Int32ul, "flags" / Int32ul)

MetadataTableHeader = Struct("signature" / Bytes(8), "reserved" / Int16ul, "entry_count" / Int16ul, "reserved2" / Bytes(20))
MetadataTableEntry = Struct("item_id" / Bytes(16), "offset" / Int32ul, "length" / Int32ul, "flags" / Int32ul, "reserved" / Int32ul)

LogEntryHeader = Struct(
    "signature" / Bytes(4),  # "loge"
    "checksum" / Int32ul,
    "entry_length" / Int32ul,
    "tail" / Int32ul,
    "sequence_number" / Int64ul,
    "descriptor_count" / Int32ul,
    "reserved" / Int32ul,
    "log_guid" / Bytes(16),
    "flushed_file_offset" / Int64ul,
    "last_file_offset" / Int64ul,
)
