"""ISA-L, imported once: the fast gzip engine and inflater where its wheels exist (x86-64, aarch64).

Everything that can use ISA-L asks here, and falls back to zlib or libdeflate
when it is missing.
"""

from __future__ import annotations

import zlib
from typing import cast

ERRORS: tuple[type[BaseException], ...]
try:
    from isal import igzip, igzip_threaded, isal_zlib

    ERRORS = (zlib.error, cast("type[BaseException]", isal_zlib.error))  # its stubs call the class an instance
except ImportError:  # pragma: no cover - platforms without ISA-L wheels
    igzip = igzip_threaded = isal_zlib = None  # type: ignore[assignment]
    ERRORS = (zlib.error,)


def available() -> bool:
    return isal_zlib is not None
