"""The input stage: opening anything boxpack reads, by its bytes, above the formats that read disks.

open.py picks the source for a path (a box, a disk image through its format's reader in formats/, a
compressed raw disk, or raw); box.py reads box archives without extracting them; compressed_disk.py
reads image.raw.xz and its kin.
"""
