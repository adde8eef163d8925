"""Zstandard: the standard library's compression.zstd (Python 3.14), else its backport of the same API.

mkosi compresses images with zstd by default when asked to compress (CompressOutput=yes).
"""

import sys

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

__all__ = ["zstd"]
