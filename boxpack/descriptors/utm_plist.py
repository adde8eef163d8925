"""UTM's config.plist for its QEMU backend: written as UTM writes it, checked as UTM decodes it.

UTM (utmapp/UTM, Configuration/) decodes the file with Swift's
PropertyListDecoder into UTMQemuConfiguration; a key read with `decode`
rather than `decodeIfPresent` that is missing or of the wrong type makes the
whole VM fail to load. REQUIRED lists those keys, section by section, with
the file and initializer they come from. A QEMU-backend file must be
ConfigurationVersion 4 (UTMConfiguration.swift: oldestVersion and
currentVersion are both 4). A file without a Backend (or with "Unknown") is a
legacy configuration (versions 2 and 3, which Armbian still writes): UTM does
not decode it with these rules but migrates it on load
(UTMConfiguration.swift, load(from:): UTMLegacyQemuConfiguration, then
UTMQemuConfiguration(migrating:)).
"""

from __future__ import annotations

import plistlib
import posixpath
import re
from typing import Any

from ..errors import BadInput

NAME = "config.plist"
BACKEND = "QEMU"
VERSION = 4
# What Foundation's UUID(uuidString:) accepts, which Swift's Codable UUID decodes with: hyphenated hex only
# (Python's uuid.UUID also takes braces, a urn: prefix and no hyphens).
UUID_FORM = re.compile(r"[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")

# section -> {key: type} of what UTM's init(from:) decodes unconditionally.
REQUIRED: dict[str, dict[str, type]] = {
    # UTMConfigurationInfo.swift, init(from:) (Icon only when IconCustom is true)
    "Information": {"Name": str, "IconCustom": bool, "UUID": str},
    # UTMQemuConfigurationSystem.swift, init(from:)
    "System": {"Architecture": str, "Target": str, "CPU": str, "CPUFlagsAdd": list, "CPUFlagsRemove": list,
               "CPUCount": int, "ForceMulticore": bool, "MemorySize": int, "JITCacheSize": int},
    # UTMQemuConfigurationQEMU.swift, init(from:) (TSO and MachinePropertyOverride are optional)
    "QEMU": {"DebugLog": bool, "UEFIBoot": bool, "RNGDevice": bool, "BalloonDevice": bool, "TPMDevice": bool,
             "Hypervisor": bool, "RTCLocalTime": bool, "PS2Controller": bool, "AdditionalArguments": list},
    # UTMQemuConfigurationInput.swift
    "Input": {"UsbBusSupport": str, "UsbSharing": bool, "MaximumUsbShare": int},
    # UTMQemuConfigurationSharing.swift
    "Sharing": {"DirectoryShareMode": str, "DirectoryShareReadOnly": bool, "ClipboardSharing": bool},
}
# (section, key) -> the raw values of the QEMUConstant enum UTM decodes it as; any other value throws
# invalidConfigurationValue (QEMUConstant.swift, init(from:)). Target, CPU and the devices' Hardware are
# AnyQEMUConstant, which takes any string (UTMQemuConfigurationSystem.swift, init(from:)): not checked.
ARCHITECTURES = ("alpha arm aarch64 avr cris hppa i386 loongarch64 m68k microblaze microblazeel mips mipsel mips64 "
                 "mips64el nios2 or1k ppc ppc64 riscv32 riscv64 rx s390x sh4 sh4eb sparc sparc64 tricore x86_64 "
                 "xtensa xtensaeb").split()  # QEMUConstantGenerated.swift, QEMUArchitecture
ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("System", "Architecture"): tuple(ARCHITECTURES),
    ("Input", "UsbBusSupport"): ("Disabled", "2.0", "3.0"),  # QEMUUSBBus
    ("Sharing", "DirectoryShareMode"): ("None", "WebDAV", "VirtFS"),  # QEMUFileShareMode
    ("Display", "UpscalingFilter"): ("Linear", "Nearest"),  # QEMUScaler
    ("Display", "DownscalingFilter"): ("Linear", "Nearest"),
    ("Drive", "ImageType"): ("None", "Disk", "CD", "BIOS", "LinuxKernel", "LinuxInitrd", "LinuxDTB"),  # QEMUDriveImageType
    ("Drive", "Interface"): ("None", "IDE", "SCSI", "SD", "MTD", "Floppy", "PFlash", "VirtIO", "NVMe", "USB"),
    ("Network", "Mode"): ("Emulated", "Shared", "Host", "Bridged"),  # QEMUNetworkMode
    ("Serial", "Mode"): ("Terminal", "TcpClient", "TcpServer", "Ptty"),  # QEMUSerialMode (Ptty on macOS)
    ("Serial", "Target"): ("Auto", "Manual", "GDB", "Monitor"),  # QEMUSerialTarget
}
# list section -> {key: type} of each entry (UTMQemuConfiguration.swift decodes all five lists).
REQUIRED_ENTRIES: dict[str, dict[str, type]] = {
    "Display": {"Hardware": str, "DynamicResolution": bool, "UpscalingFilter": str, "DownscalingFilter": str,
                "NativeResolution": bool},  # UTMQemuConfigurationDisplay.swift
    "Drive": {"ImageType": str, "Interface": str, "Identifier": str},  # UTMQemuConfigurationDrive.swift
    "Network": {"Mode": str, "Hardware": str, "MacAddress": str, "IsolateFromHost": bool, "PortForward": list},
    "Serial": {"Mode": str, "Target": str},  # UTMQemuConfigurationSerial.swift
    "Sound": {"Hardware": str},  # UTMQemuConfigurationSound.swift
}


def write(name: str, vm_uuid: str, architecture: str, target: str, cpus: int, memory_mb: int, uefi: bool,
          display: str, disks: list[tuple[str, str]], nics: list[tuple[str, str, str]]) -> bytes:
    """The XML plist UTM saves for a QEMU VM. disks: (image file in Data/, identifier); nics: (mode, device,
    MAC). Every value UTM decodes unconditionally is written, with UTM's defaults for a new Linux VM."""
    config: dict[str, Any] = {
        "Backend": BACKEND,
        "ConfigurationVersion": VERSION,
        "Information": {"Name": name, "IconCustom": False, "Icon": "linux", "UUID": vm_uuid},
        "System": {"Architecture": architecture, "Target": target, "CPU": "default", "CPUFlagsAdd": [], "CPUFlagsRemove": [],
                   "CPUCount": cpus, "ForceMulticore": False, "MemorySize": memory_mb, "JITCacheSize": 0},
        "QEMU": {"DebugLog": False, "UEFIBoot": uefi, "RNGDevice": True, "BalloonDevice": False, "TPMDevice": False,
                 "Hypervisor": True, "TSO": False, "RTCLocalTime": False, "PS2Controller": False, "AdditionalArguments": []},
        "Input": {"UsbBusSupport": "3.0", "UsbSharing": False, "MaximumUsbShare": 3},
        "Sharing": {"DirectoryShareMode": "None", "DirectoryShareReadOnly": False, "ClipboardSharing": False},
        "Display": [{"Hardware": display, "DynamicResolution": True, "UpscalingFilter": "Nearest",
                     "DownscalingFilter": "Linear", "NativeResolution": False}],
        "Drive": [{"ImageName": image, "ImageType": "Disk", "Interface": "VirtIO", "InterfaceVersion": 1,
                   "Identifier": ident, "ReadOnly": False} for image, ident in disks],
        "Network": [{"Mode": mode, "Hardware": device, "MacAddress": mac, "IsolateFromHost": False, "PortForward": []}
                    for mode, device, mac in nics],
        "Serial": [],
        "Sound": [],
    }
    return plistlib.dumps(config, fmt=plistlib.FMT_XML, sort_keys=True)


def read(data: bytes) -> dict[str, Any]:
    """The plist as a dictionary (XML or binary, as PropertyListDecoder takes both)."""
    try:
        config = plistlib.loads(data)
    except (plistlib.InvalidFileException, ValueError, TypeError, OverflowError) as e:
        raise BadInput(f"not a property list ({e})") from None
    if not isinstance(config, dict):
        raise BadInput("its root is not a dictionary")
    return config


def _typed(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def legacy(config: dict[str, Any]) -> bool:
    """A configuration UTM migrates on load rather than decodes (UTMConfigurationStub: Backend absent or
    "Unknown")."""
    return config.get("Backend", "Unknown") == "Unknown"


def problems(config: dict[str, Any]) -> list[str]:
    """Why UTM would fail to load this QEMU configuration: each key it decodes that is missing or mistyped."""
    found = []
    if config.get("Backend") != BACKEND:  # UTMConfiguration.swift: UTMBackend is "QEMU", "Apple" or "Unknown", case and all
        found.append(f"Backend is {config.get('Backend')!r}, not 'QEMU'")
    if config.get("ConfigurationVersion") != VERSION:
        found.append(f"ConfigurationVersion is {config.get('ConfigurationVersion')!r}; UTM loads version {VERSION} only")
    for section, keys in REQUIRED.items():
        values = config.get(section)
        if not isinstance(values, dict):
            found.append(f"{section} is missing")
            continue
        found += [f"{section}/{k} is missing or not {t.__name__}" for k, t in keys.items() if not _typed(values.get(k), t)]
    for section, keys in REQUIRED_ENTRIES.items():
        entries = config.get(section)
        if not isinstance(entries, list):
            found.append(f"{section} is missing (an empty list is allowed)")
            continue
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                found.append(f"{section}[{i}] is not a dictionary")
                continue
            found += [f"{section}[{i}]/{k} is missing or not {t.__name__}" for k, t in keys.items() if not _typed(entry.get(k), t)]
    for (section, key), allowed in ENUMS.items():
        values = config.get(section)
        entries = [(f"{section}[{i}]", e) for i, e in enumerate(values)] if isinstance(values, list) else [(section, values)]
        for where, entry in entries:
            value = entry.get(key) if isinstance(entry, dict) else None
            if isinstance(value, str) and value not in allowed:
                found.append(f"{where}/{key} is {value[:40]!r}, not one of UTM's values ({', '.join(allowed[:10])})")
    found += _decode_details(config)
    info = config.get("Information")
    if isinstance(info, dict) and isinstance(info.get("UUID"), str) and not UUID_FORM.fullmatch(info["UUID"]):
        found.append(f"Information/UUID {info['UUID']!r} is not a UUID as Swift reads one (8-4-4-4-12 hex digits)")
    return found


def _decode_details(config: dict[str, Any]) -> list[str]:
    """What else UTM's decoders throw on: a custom icon without its file (UTMConfigurationInfo.swift), an
    argument that is not a string (QEMUArgument), a port forward without its protocol or guest port and a
    host network id that is not a UUID (UTMQemuConfigurationNetwork.swift, UTMQemuConfigurationPortForward)."""
    found = []
    info = config.get("Information")
    if isinstance(info, dict) and info.get("IconCustom") is True and not isinstance(info.get("Icon"), str):
        found.append("Information/Icon is missing, and IconCustom is true")
    qemu = config.get("QEMU")
    arguments = qemu.get("AdditionalArguments") if isinstance(qemu, dict) else None
    if isinstance(arguments, list):
        found += [f"QEMU/AdditionalArguments[{i}] is not a string" for i, a in enumerate(arguments) if not isinstance(a, str)]
    networks = config.get("Network")
    for i, network in enumerate(networks if isinstance(networks, list) else []):
        if not isinstance(network, dict):
            continue
        host_net = network.get("HostNetUuid")
        if host_net is not None and not (isinstance(host_net, str) and UUID_FORM.fullmatch(host_net)):
            found.append(f"Network[{i}]/HostNetUuid {str(host_net)[:40]!r} is not a UUID")
        forwards = network.get("PortForward")
        for j, forward in enumerate(forwards if isinstance(forwards, list) else []):
            if not isinstance(forward, dict) or forward.get("Protocol") not in ("TCP", "UDP") \
                    or not _typed(forward.get("GuestPort"), int):
                found.append(f"Network[{i}]/PortForward[{j}] needs Protocol TCP or UDP and an integer GuestPort")
    return found


FLASH = ("MTD", "PFlash")


def member_disk_files(member: str, data: bytes) -> list[str]:
    """The disk drives' images a box's <vm>.utm/config.plist names, in order, as paths in the box (UTM keeps
    them in the bundle's Data/: UTMConfiguration.swift, dataDirectoryName); none when it cannot say. A Disk
    image on an MTD or PFlash interface is a machine's flash, not a disk: the PRAM of QEMU's q800 (a few
    hundred bytes, `-drive if=mtd`) or firmware variables; BIOS drives are firmware."""
    try:
        drives = read(data).get("Drive")
    except BadInput:
        return []
    if not isinstance(drives, list):
        return []
    data_dir = posixpath.join(posixpath.dirname(member), "Data")
    return [posixpath.join(data_dir, d["ImageName"]) for d in drives
            if isinstance(d, dict) and d.get("ImageType") == "Disk" and d.get("Interface") not in FLASH
            and isinstance(d.get("ImageName"), str)]
