"""ISA-L, imported once: the fast gzip engine and inflater where its wheels exist (x86-64, aarch64).

Everything that can use ISA-L asks here, and falls back to zlib or libdeflate
when it is missing.
"""

from __future__ import annotations

import zlib

try:
    from isal import igzip, igzip_threaded, isal_zlib

    ERRORS: tuple[type[BaseException], ...] = (zlib.error, isal_zlib.error)
except ImportError:  # pragma: no cover - platforms without ISA-L wheels
    igzip = igzip_threaded = isal_zlib = None
    ERRORS = (zlib.error,)


def available() -> bool:
    return isal_zlib is not None
