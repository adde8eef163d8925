"""boxpack: turn a disk image into Vagrant boxes."""

from .boottest import TestOptions, TestResult, test
from .errors import BoxpackError
from .pack import BoxResult, PackOptions, pack

__all__ = ["BoxResult", "BoxpackError", "PackOptions", "TestOptions", "TestResult", "pack", "test"]
__version__ = "0.1.0"
