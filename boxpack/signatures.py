"""Box signatures: OpenSSH's (PROTOCOL.sshsig in openssh-portable), made and checked by `ssh-keygen -Y`, which every
machine that runs Vagrant has, with ordinary SSH keys (a key with a passphrase through ssh-agent) and trust as an
`allowed_signers` file (ssh-keygen(1), ALLOWED SIGNERS).

A box's signature is exactly what `ssh-keygen -Y sign -f KEY -n vagrant-box BOX` writes, over the box file's bytes,
and is kept beside the box as BOX.sig (in a store, at the box's key with .sig appended, so it is at the box's URL +
.sig from any web server). It is made while the box streams: ssh-keygen reads the bytes on its standard input as
they go to their file or upload, and hashes them once (SHA-512).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from .errors import BadInput, BadOption, CannotRun, OutputFailed

NAMESPACE = "vagrant-box"
SUFFIX = ".sig"
LIMIT = 64 * 1024  # bytes of a signature file: an SSHSIG is a few hundred


def _ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if not found:
        raise CannotRun("signing and checking box signatures needs ssh-keygen (apt-get install openssh-client)")
    return found


def _last_line(err: bytes) -> str:
    lines = [line for line in err.decode(errors="replace").splitlines() if line.strip() and "on standard input" not in line]
    return lines[-1].strip() if lines else "ssh-keygen failed"


class Signing:
    """A signature with key being made over the bytes written to it; finish() gives the signature's text."""

    def __init__(self, key: str | os.PathLike[str]) -> None:
        self.key = str(key)
        if not Path(self.key).is_file():
            raise BadOption(f"--sign-key {self.key}: no such key file")
        self.proc = subprocess.Popen([_ssh_keygen(), "-q", "-Y", "sign", "-f", self.key, "-n", NAMESPACE],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.failed = False

    def write(self, data: bytes | memoryview) -> None:
        if self.failed:
            return
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
        except BrokenPipeError:
            self.failed = True  # ssh-keygen gave up: finish() says why

    def finish(self) -> bytes:
        out, err = self.proc.communicate()
        if self.proc.returncode != 0 or not out.startswith(b"-----BEGIN SSH SIGNATURE-----"):
            raise OutputFailed(f"--sign-key {self.key}: no signature could be made with it ({_last_line(err)})")
        return out

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def check_key(key: str | os.PathLike[str]) -> None:
    """BadOption unless key signs (a signature of nothing, made and thrown away): said before anything is published."""
    try:
        Signing(key).finish()
    except OutputFailed as e:
        raise BadOption(str(e)) from None


def sign_file(key: str | os.PathLike[str], path: Path) -> bytes:
    """The signature of a file's bytes, fed to ssh-keygen as they are read."""
    signing = Signing(key)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1024 * 1024):
                signing.write(chunk)
    except OSError as e:
        signing.abort()
        raise BadInput(f"{path}: cannot read: {e.strerror}") from None
    return signing.finish()


class Verifying:
    """A signature being checked against the bytes written to it, as they stream (a mirror's download): finish()
    gives the signer, or BadInput naming the signature."""

    def __init__(self, signature: bytes, allowed_signers: str | Path, where: str) -> None:
        if not signature.startswith(b"-----BEGIN SSH SIGNATURE-----"):
            raise BadInput(f"{where}: not an SSH signature")
        self.where, self.allowed = where, str(allowed_signers)
        self.sig = tempfile.NamedTemporaryFile(prefix="boxpack-sig-")
        self.sig.write(signature)
        self.sig.flush()
        self.principal = _principal(self.sig.name, self.allowed, where)
        command = [_ssh_keygen(), "-Y", "verify", "-f", self.allowed, "-I", self.principal, "-n", NAMESPACE, "-s", self.sig.name]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, data: bytes | memoryview) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
        except BrokenPipeError:
            pass  # ssh-keygen stopped reading: finish() says why

    def finish(self) -> str:
        _, err = self.proc.communicate()
        self.sig.close()
        if self.proc.returncode != 0:
            raise BadInput(f"{self.where}: does not verify as a {NAMESPACE} signature of this box by {self.principal} "
                           f"({_last_line(err)})")
        return self.principal

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()
        self.sig.close()


def _principal(sig: str, allowed_signers: str, where: str) -> str:
    found = subprocess.run([_ssh_keygen(), "-Y", "find-principals", "-s", sig, "-f", allowed_signers], capture_output=True,
                           stdin=subprocess.DEVNULL)
    principals = found.stdout.decode(errors="replace").split()
    if found.returncode != 0 or not principals:
        raise BadInput(f"{where}: not made by a key {allowed_signers} allows ({_last_line(found.stderr)})")
    return principals[0]


def verify(data: IO[bytes] | Iterable[bytes], signature: bytes, allowed_signers: str | Path, where: str) -> str:
    """Who signed data, by allowed_signers, for the vagrant-box namespace; BadInput naming the signature (where) when
    it is not a signature, not by a key allowed there, or not of these bytes."""
    checking = Verifying(signature, allowed_signers, where)
    try:
        for chunk in iter(lambda: data.read(1024 * 1024), b"") if hasattr(data, "read") else data:
            checking.write(chunk)
    except BaseException:
        checking.abort()
        raise
    return checking.finish()


def fingerprint(signature: bytes) -> str | None:
    """The SHA256 fingerprint of the key a signature names, as ssh-keygen shows keys; None when it is no signature."""
    text = signature.split(b"-----BEGIN SSH SIGNATURE-----", 1)[-1].split(b"-----END SSH SIGNATURE-----", 1)[0]
    body = b"".join(line.strip() for line in text.splitlines())
    try:
        blob = base64.b64decode(body, validate=True)
        if blob[:6] != b"SSHSIG":
            return None
        (length,) = struct.unpack(">I", blob[10:14])
        key = blob[14:14 + length]
    except (ValueError, struct.error):
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(key).digest()).decode().rstrip("=")
