"""boxpack: turn a disk image into Vagrant boxes."""

from .errors import BoxpackError
from .pack import BoxResult, PackOptions, pack

__all__ = ["BoxResult", "BoxpackError", "PackOptions", "pack"]
__version__ = "0.1.0"
