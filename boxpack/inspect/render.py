"""inspect's and verify's reports as people read them, safe for a terminal whatever a box holds."""

from __future__ import annotations

import json

from ..report import Report


def printable(text: object) -> str:
    """Text safe for a terminal: control characters (escape sequences in a hostile member name) shown escaped."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(text))


def render_inspect(r: Report) -> str:
    """The facts, as a person reads them."""
    lines = [f"{r.path}: {r.kind}" + (f", {r.compression} compression" if r.compression else "")]
    if r.members:
        lines.append("members:")
        lines += [f"  {m['size']:>14}  {m['type']:<8} {m['name']}" for m in r.members]
        if r.member_count > len(r.members):
            lines.append(f"  ... and {r.member_count - len(r.members)} more")
    if r.metadata is not None:
        lines.append(f"metadata.json: {json.dumps(r.metadata)[:2000]}")
    if r.vagrantfile:
        firmware = (f"{r.vm_firmware['firmware']} ({r.vm_firmware['from']})" if r.vm_firmware
                    else r.vagrantfile.get("firmware") or "default (bios)")
        lines.append(f"Vagrantfile: base_mac {r.vagrantfile.get('base_mac') or 'not set'}, firmware {firmware}")
    for i, disk in enumerate(r.disks):
        label = f"disk {i + 1}" if len(r.disks) > 1 else "disk"
        lines.append(f"{label}: " + ", ".join(f"{k} {v}" for k, v in disk.items()))
    if r.ovf:
        lines.append("box.ovf: " + ", ".join(f"{k} {v}" for k, v in r.ovf.items()))
    if r.partitions:
        p = r.partitions
        lines.append(f"partition table: {p['table']}, architecture {p['architecture'] or 'unknown'} ({p['architecture_reason']}), firmware {p['firmware']} ({p['firmware_reason']})")
        lines += [f"  {q['number']:>3}  {q['first_lba']:>12}-{q['last_lba']:<12} {q['type']}  {q['name']}" for q in p["partitions"]]
    if r.findings:
        lines.append("findings:")
        lines += [f"  {f.severity.upper():<8}{f.code}: {f.message}" for f in r.findings]
    if r.unreadable:
        lines.append(f"could not be read: {r.unreadable}")
    return "".join(printable(line) + "\n" for line in lines)


def render_verify(r: Report) -> str:
    lines = [f"{f.severity.upper():<7} {f.code}: {f.message}" for f in r.findings]
    if r.unreadable:
        lines.append(f"ERROR   unreadable: {r.unreadable}")
    errors = sum(f.severity == "error" for f in r.findings)
    warnings = sum(f.severity == "warning" for f in r.findings)
    verdict = f"{errors} error(s)" if errors else "OK"
    if warnings:
        verdict += f", {warnings} warning(s)"
    lines.append(f"{r.path}: " + ("could not be read" if r.unreadable else verdict))
    return "".join(printable(line) + "\n" for line in lines)
