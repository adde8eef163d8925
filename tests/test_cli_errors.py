"""Bad input and bad output: one line, non-zero exit, no partial box, nothing overwritten."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, make_disk, run_boxpack, writing

import boxpack
from boxpack.errors import BoxpackError


def _fails(proc: subprocess.CompletedProcess, text: str, code: int = 1) -> None:
    """One line naming text, and the exit status of errors.py's table (1 the input is bad)."""
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    assert err.count("\n") == 1 and err.startswith("boxpack: error:") and text in err, err
    assert "Traceback" not in err


def _only(directory: Path, *names: str) -> None:
    assert sorted(p.name for p in directory.iterdir()) == sorted(names)


def test_missing_file(tmp_path: Path) -> None:
    _fails(run_boxpack(tmp_path / "nope.img", "--provider", "libvirt", check=False, cwd=tmp_path), "no such file")
    _only(tmp_path)


def test_directory(tmp_path: Path) -> None:
    _fails(run_boxpack(tmp_path, "--provider", "libvirt", check=False, cwd=tmp_path), "is a directory")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.img").touch()
    _fails(run_boxpack(tmp_path / "e.img", "--provider", "libvirt", check=False, cwd=tmp_path), "is empty")
    _only(tmp_path, "e.img")


def test_unreadable_file(tmp_path: Path) -> None:
    disk = tmp_path / "secret.img"
    disk.write_bytes(b"x" * 512)
    disk.chmod(0)
    # Loaded before the drop: nobody may not read the checkout (a clone in a 0700 temporary directory).
    pack, options = boxpack.pack, boxpack.PackOptions(["libvirt"], tmp_path / "x.box")
    if os.geteuid() == 0:  # root reads anything: drop to nobody for the open
        tmp_path.chmod(0o755)
        os.seteuid(65534)
    try:
        with pytest.raises(BoxpackError, match="permission denied"):
            pack(disk, options)
    finally:
        if os.getuid() == 0:
            os.seteuid(0)


def test_bad_options_are_one_line(tmp_path: Path, sample_disk: Path) -> None:
    proc = run_boxpack(sample_disk, "--provider", "hyper-v", check=False)
    assert proc.returncode == 2 and proc.stderr.decode().count("\n") == 1
    _fails(run_boxpack(sample_disk, "--provider", "libvirt", "--level", "13", "-o", tmp_path / "a.box", check=False), "out of range", 2)
    _fails(run_boxpack(sample_disk, "--provider", "libvirt", "--include", tmp_path / "no", "-o", tmp_path / "a.box", check=False), "not found", 2)
    _fails(
        run_boxpack(sample_disk, "--provider", "libvirt", "-o", "-", env={"SOURCE_DATE_EPOCH": "soon"}, check=False),
        "SOURCE_DATE_EPOCH", 2,
    )


def test_one_exit_status_table_in_help_readme_and_errors() -> None:
    """--help of every verb ends with errors.py's table, and the README's table says the same codes and types."""
    from boxpack.cli.common import VERBS
    from boxpack.errors import EXIT_CODES

    for verb in ["", *VERBS]:
        out = run_boxpack(*([verb] if verb else []), "--help").stdout.decode()
        assert max(map(len, out.splitlines())) <= 125, verb  # an example's line break lost (a bare backslash) shows here
        table = out[out.index("exit status:\n"):]
        assert [int(line.split()[0]) for line in table.splitlines()[1:] if line[2:3].isdigit()] == [c for c, _ in EXIT_CODES], verb
    readme = (ROOT / "README.md").read_text()
    rows = [line.split("|")[1:3] for line in readme[readme.index("| exit | error type |"):].splitlines()[2:9]]
    types = {c.exit_code: c.__name__ for c in boxpack.BoxpackError.__subclasses__()}
    assert [(int(code), kind.strip().strip("`")) for code, kind in rows] == [(c, types.get(c, "")) for c, _ in EXIT_CODES]


def test_library_errors_carry_their_exit_status(tmp_path: Path, sample_disk: Path) -> None:
    """What the command exits with is the error type the library raised: a caller can act on the type."""
    with pytest.raises(boxpack.BadOption):
        boxpack.pack(sample_disk, boxpack.PackOptions(["libvirt"], tmp_path / "a.box", level=13))
    with pytest.raises(boxpack.BadInput):
        boxpack.pack(tmp_path, boxpack.PackOptions(["libvirt"], tmp_path / "a.box"))
    (tmp_path / "b.box").write_text("precious")
    with pytest.raises(boxpack.OutputFailed):
        boxpack.pack(sample_disk, boxpack.PackOptions(["libvirt"], tmp_path / "b.box"))
    assert (tmp_path / "b.box").read_text() == "precious"


def test_existing_output_needs_force(tmp_path: Path, sample_disk: Path) -> None:
    box = tmp_path / "out.box"
    box.write_text("precious")
    _fails(run_boxpack(sample_disk, "--provider", "libvirt", "-o", box, check=False), "--force", 3)
    assert box.read_text() == "precious"
    run_boxpack(sample_disk, "--provider", "libvirt", "-o", box, "--force")
    assert box.read_bytes()[:2] == b"\x1f\x8b"


def test_default_name_in_current_directory(tmp_path: Path, sample_disk: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    run_boxpack(sample_disk, "--provider", "libvirt", cwd=work)
    _only(work, "sample-libvirt.box")


def test_full_stream_output(sample_disk: Path) -> None:
    with open("/dev/full", "wb") as full:
        proc = run_boxpack(sample_disk, "--provider", "libvirt", "-o", "-", stdout=full, check=False)
    _fails(proc, "No space left on device", 3)


def test_file_too_large_leaves_nothing_behind(tmp_path: Path, sample_disk: Path) -> None:
    """A write error mid-box (RLIMIT_FSIZE stands in for a full disk) removes the partial file."""
    out = tmp_path / "out"
    out.mkdir()

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))

    proc = run_boxpack(sample_disk, "--provider", "libvirt", "-o", out / "a.box", check=False, preexec_fn=limit)
    _fails(proc, "File too large", 3)
    _only(out)


@pytest.mark.slow
def test_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    disk = make_disk.make(tmp_path / "big.img", data=160 * 1024 * 1024)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "boxpack", str(disk), "--provider", "libvirt", "-o", str(out / "a.box"),
         "--level", "12", "--threads", "1"],
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    while proc.poll() is None and not writing(proc.pid, out):  # the box being written (unnamed until placed)
        pass
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    _only(out)


def test_api_returns_what_was_written(tmp_path: Path, sample_disk: Path) -> None:
    [result] = boxpack.pack(sample_disk, boxpack.PackOptions(["libvirt"], tmp_path))
    assert result.path == tmp_path / "sample-libvirt.box"
    assert result.size == result.path.stat().st_size and len(result.checksum) == 64
    with pytest.raises(BoxpackError, match="already exists"):
        boxpack.pack(sample_disk, boxpack.PackOptions(["libvirt"], tmp_path))


@pytest.mark.slow
def test_peak_memory_is_flat_in_the_virtual_size(tmp_path: Path) -> None:
    """A 2 TiB sparse disk costs the same memory as a 1 GiB one with the same data, for both providers.

    The Python heap's peak (tracemalloc) is compared: anything kept per cluster
    of virtual size would cost 32 MiB or more at 2 TiB, while thread timing
    moves the peak by at most a piece or two in flight (a few MiB). RSS also
    counts glibc's arenas, so it gets a ceiling. RSS is the process's own high
    water mark (VmHWM): getrusage's ru_maxrss survives exec, so it would report
    the pytest process that forked the child.
    """

    def peaks(size: int) -> tuple[int, int]:
        disk = make_disk.make(tmp_path / f"d{size}.img", size=size, data=32 * 1024 * 1024)
        out = tmp_path / f"out{size}"
        out.mkdir()
        code = (
            "import tracemalloc; tracemalloc.start(); from boxpack.cli import main; "
            f"main([{str(disk)!r}, '--provider', 'libvirt', '--provider', 'virtualbox', '-o', {str(out)!r}, '-q']); "
            "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')); "
            "print(tracemalloc.get_traced_memory()[1], hwm * 1024)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True).stdout.split()
        return int(out[-2]), int(out[-1])

    (heap_small, rss_small), (heap_big, rss_big) = peaks(1024**3), peaks(2 * 1024**4)
    assert abs(heap_big - heap_small) < 4 * 1024 * 1024, (heap_small, heap_big)
    assert max(rss_small, rss_big) < 150 * 1024 * 1024, (rss_small, rss_big)
