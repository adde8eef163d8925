"""The input stage: opening anything boxpack reads, by its bytes.

open.py picks the source for a path (a box, a disk image through its format's reader in formats/, a
compressed raw disk, or raw); disk.py is the Source interface every writer reads (64 KiB clusters in
order); pieces.py is the data cut into pieces and compressed once for every box of a run;
bytesource.py is byte access by offset, to a file or to a box member streamed forward; box.py reads
box archives without extracting them; compressed_disk.py reads image.raw.xz and its kin; http.py
downloads catalogs and boxes for the mirror.
"""
