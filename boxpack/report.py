"""What inspect and verify say about a box or disk: its facts and findings."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .findings import Finding, Findings


@dataclass
class Report:
    path: str
    kind: str = "box"  # box or disk
    compression: str | None = None
    members: list[dict] = field(default_factory=list)  # the first MAX_LISTED, for display
    member_count: int = 0
    metadata: Any = None
    vagrantfile: dict = field(default_factory=dict)
    disks: list[dict] = field(default_factory=list)  # every disk's facts, in archive order (the first MAX_DISKS)
    partitions: dict | None = None
    vm_firmware: dict | None = None  # {"firmware": "efi" | "bios", "from": member} where the box's VM config says
    ovf: dict | None = None
    checksum: dict | None = None
    findings: Findings = field(default_factory=Findings)
    unreadable: str | None = None

    MAX_LISTED = 1000
    MAX_DISKS = 32  # checked; a box with more is no VM's

    @property
    def disk(self) -> dict:
        """The first disk's facts (the boot disk in boxes boxpack and others write); {} when none was read."""
        return self.disks[0] if self.disks else {}

    def add(self, code: str, severity: str, message: str) -> None:
        self.findings.add(code, severity, message)

    @property
    def exit_code(self) -> int:
        return self.exit_status()

    def exit_status(self, strict: bool = False) -> int:
        """1 unreadable or an error (or, when strict, a warning), else 0: a warning is what Vagrant and its
        providers accept (a VMware OVF's bridged first adapter), so it fails nobody's CI unless asked to."""
        failing = ("error", "warning") if strict else ("error",)
        return 1 if self.unreadable or any(f.severity in failing for f in self.findings) else 0

    def to_json(self, strict: bool = False) -> str:
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "disks":
                fields["disk"] = self.disk
            if f.name != "findings":
                fields[f.name] = getattr(self, f.name)
        fields["findings"] = [asdict(f) for f in self.findings]
        return json.dumps({**fields, "exit_code": self.exit_status(strict)}, indent=2, default=str)


__all__ = ["Finding", "Findings", "Report"]
