"""The disk floor: what every format, source and writer shares about a disk.

source.py is the Source interface every writer reads (64 KiB clusters in order) and the image source
that readers of formats/ plug into; bytesource.py is byte access by offset, to a file or to a box member
streamed forward; pieces.py is the data cut into pieces and compressed once for every box of a run;
partitions.py reads the partition table (firmware, architecture), and esp.py, fat.py and c_fat.py the
EFI system partition's boot loaders.
"""
