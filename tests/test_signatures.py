"""Signed boxes (issue 53): OpenSSH signatures (PROTOCOL.sshsig) made where boxes are packed, published and mirrored,
checked by `boxpack verify --signed-by` and `boxpack mirror --signed-by`, and handed out by `boxpack serve`. OpenSSH's
own `ssh-keygen -Y verify` is the oracle for every signature boxpack writes; boxpack checks ones ssh-keygen wrote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import make_disk
import pytest
from conftest import MIB, ROOT, Target, Vagrant, run_boxpack, unavailable
from served import Served, get, publish, token

NAME = "acme/debian"


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    """Two Ed25519 keys and an ECDSA one, and an allowed_signers file that allows ci@acme and ops@acme (ECDSA) for
    vagrant-box, and evil@example for another namespace."""
    if not shutil.which("ssh-keygen"):
        unavailable("ssh-keygen", "not installed (apt-get install openssh-client)")
    d = tmp_path_factory.mktemp("keys")
    for name, kind in (("ci", "ed25519"), ("ops", "ecdsa"), ("evil", "ed25519")):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"{name}@x", "-f", d / name], check=True)
    pub = {n: (d / f"{n}.pub").read_text().strip() for n in ("ci", "ops", "evil")}
    (d / "allowed_signers").write_text(f'ci@acme namespaces="vagrant-box" {pub["ci"]}\n'
                                       f'ops@acme namespaces="vagrant-box" {pub["ops"]}\n'
                                       f'evil@example namespaces="file" {pub["evil"]}\n')
    return d


@pytest.fixture(scope="module")
def boxes(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("signed-boxes")
    found = []
    for i in range(2):
        run_boxpack(make_disk.make(d / f"{i}.img", data=(1 + i) * MIB), "--provider", "libvirt", "-o", d / f"{i}.box")
        found.append(d / f"{i}.box")
    return found


def oracle(keys: Path, box: Path | bytes, signature: Path, principal: str = "ci@acme") -> subprocess.CompletedProcess:
    """OpenSSH's own word on a signature of box."""
    data = box if isinstance(box, bytes) else box.read_bytes()
    return subprocess.run(["ssh-keygen", "-Y", "verify", "-f", keys / "allowed_signers", "-I", principal, "-n", "vagrant-box",
                           "-s", signature], input=data, capture_output=True)


def verified(box: Path, keys: Path, *extra: str) -> tuple[int, list[dict]]:
    proc = run_boxpack("verify", box, "--signed-by", keys / "allowed_signers", "--json", *extra, check=False)
    return proc.returncode, [f for f in json.loads(proc.stdout)["findings"] if f["code"].startswith("sign")]


def test_publish_signs_each_box_and_openssh_agrees(web: Target, keys: Path, boxes: list[Path]) -> None:
    run_boxpack("publish", boxes[0], "--to", web.to, "--name", NAME, "--box-version", "1.0.0", "--base-url", web.base_url,
                "--sign-key", keys / "ci")
    stored = web.root / NAME / "1.0.0/libvirt/amd64/vagrant.box"
    assert oracle(keys, stored, Path(f"{stored}.sig")).returncode == 0
    assert get(f"{web.base_url}/{NAME}/1.0.0/libvirt/amd64/vagrant.box.sig")[2] == Path(f"{stored}.sig").read_bytes()
    disk = make_disk.make(web.root.parent / "p.img", data=MIB)
    run_boxpack(disk, "--provider", "libvirt", "--publish", web.to, "--name", NAME, "--box-version", "2.0.0",
                "--base-url", web.base_url, "--sign-key", keys / "ops")  # signed while it is packed and streamed
    streamed = web.root / NAME / "2.0.0/libvirt/amd64/vagrant.box"
    assert oracle(keys, streamed, Path(f"{streamed}.sig"), "ops@acme").returncode == 0
    out = web.root.parent / "files"
    run_boxpack(disk, "--provider", "libvirt", "--provider", "virtualbox", "-o", f"{out}/", "--sign-key", keys / "ci")
    for box in out.glob("*.box"):  # box files signed as they are written, each beside its box
        assert oracle(keys, box, Path(f"{box}.sig")).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["p-libvirt.box", "p-libvirt.box.sig", "p-virtualbox.box", "p-virtualbox.box.sig"]


def test_verify_names_the_signer_and_refuses_every_wrong_signature_in_one_line(keys: Path, boxes: list[Path],
                                                                              tmp_path: Path) -> None:
    box = tmp_path / "b.box"
    shutil.copy(boxes[0], box)
    sign = lambda key, target, ns="vagrant-box": subprocess.run(  # noqa: E731
        ["ssh-keygen", "-q", "-Y", "sign", "-f", keys / key, "-n", ns], input=target.read_bytes(), capture_output=True,
        check=True).stdout
    Path(f"{box}.sig").write_bytes(sign("ci", box))  # what ssh-keygen wrote
    status, found = verified(box, keys)
    assert status == 0 and found[0]["code"] == "signed" and "by ci@acme (SHA256:" in found[0]["message"], found
    cases = {"tampered": (box.read_bytes()[:-1] + bytes([box.read_bytes()[-1] ^ 1]), sign("ci", box)),
             "another box's": (box.read_bytes(), sign("ci", boxes[1])),
             "another namespace": (box.read_bytes(), sign("ci", box, "file")),
             "a key not allowed": (box.read_bytes(), sign("evil", box))}
    for case, (data, signature) in cases.items():
        other = tmp_path / f"{case}.box"
        other.write_bytes(data)
        Path(f"{other}.sig").write_bytes(signature)
        status, found = verified(other, keys)
        assert status == 1 and found and found[0]["severity"] == "error" and f"{other}.sig" in found[0]["message"], (case, found)
    revoked = tmp_path / "revoked_signers"
    revoked.write_text("".join(line for line in (keys / "allowed_signers").read_text().splitlines(True) if "ci@acme" not in line))
    proc = run_boxpack("verify", box, "--signed-by", revoked, check=False)
    assert proc.returncode == 1 and "not made by a key" in proc.stdout.decode()
    Path(f"{box}.sig").unlink()
    assert verified(box, keys)[1][0]["code"] == "signature-missing"
    moved = tmp_path / "elsewhere.sig"
    moved.write_bytes(sign("ci", box))
    assert verified(box, keys, "--signature", str(moved))[0] == 0


def test_a_key_that_cannot_sign_stops_before_anything_is_published(web: Target, keys: Path, boxes: list[Path],
                                                                   tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret words", "-f", tmp_path / "locked"], check=True)
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}  # no agent to ask, no terminal to ask on
    for key in (tmp_path / "locked", tmp_path / "missing"):
        proc = run_boxpack("publish", boxes[0], "--to", web.to, "--name", NAME, "--box-version", "1.0.0", "--base-url",
                           web.base_url, "--sign-key", key, check=False, env=env, stdin=subprocess.DEVNULL,
                           start_new_session=True)
        assert proc.returncode == 2 and proc.stderr.decode().count("\n") == 1, proc.stderr
    assert not list(web.root.rglob("*.box"))


def test_a_key_with_a_passphrase_signs_through_ssh_agent(web: Target, boxes: list[Path], tmp_path: Path, keys: Path) -> None:
    if not shutil.which("ssh-agent") or not shutil.which("ssh-add"):
        unavailable("ssh-agent", "not installed (apt-get install openssh-client)")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret words", "-C", "ci@x", "-f", tmp_path / "locked"],
                   check=True)
    agent = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True).stdout
    env = dict(line.split(";")[0].split("=", 1) for line in agent.splitlines() if "=" in line.split(";")[0])
    askpass = tmp_path / "askpass"
    askpass.write_text("#!/bin/sh\necho 'secret words'\n")
    askpass.chmod(0o755)
    try:
        subprocess.run(["ssh-add", tmp_path / "locked"], env={**os.environ, **env, "SSH_ASKPASS": str(askpass),
                       "SSH_ASKPASS_REQUIRE": "force"}, check=True, capture_output=True, stdin=subprocess.DEVNULL)
        run_boxpack("publish", boxes[0], "--to", web.to, "--name", NAME, "--box-version", "1.0.0", "--base-url",
                    web.base_url, "--sign-key", f"{tmp_path / 'locked'}.pub", env=env)
    finally:
        subprocess.run(["ssh-agent", "-k"], env={**os.environ, **env}, capture_output=True)
    allowed = tmp_path / "allowed"
    allowed.write_text(f'ci@acme namespaces="vagrant-box" {(tmp_path / "locked.pub").read_text()}')
    stored = web.root / NAME / "1.0.0/libvirt/amd64/vagrant.box"
    assert subprocess.run(["ssh-keygen", "-Y", "verify", "-f", allowed, "-I", "ci@acme", "-n", "vagrant-box", "-s",
                           f"{stored}.sig"], input=stored.read_bytes(), capture_output=True).returncode == 0


def test_serve_hands_out_a_private_boxs_signature_to_its_token_and_shows_who_signed(web: Target, keys: Path,
                                                                                  boxes: list[Path], tmp_path: Path) -> None:
    publish(web, boxes[0], NAME, "1.0.0", "--private", "--sign-key", str(keys / "ci"))
    served = Served(web, tmp_path, workers=1)
    try:
        read = token(web, "acme")
        url = f"{served.url}/{NAME}/1.0.0/libvirt/amd64/vagrant.box.sig"
        assert get(url)[0] == 404  # as the box is to anyone without its token
        status, _, signature = get(url, read)
        assert status == 200 and signature == Path(f"{web.root / NAME}/1.0.0/libvirt/amd64/vagrant.box.sig").read_bytes()
        page = get(f"{served.url}/{NAME}", read, Accept="text/html")[2].decode()
        assert "signed by" in page and "SHA256:" in page
    finally:
        served.stop()


def test_mirror_copies_only_boxes_an_allowed_key_signed_and_keeps_the_signature(web: Target, keys: Path, boxes: list[Path],
                                                                                tmp_path: Path) -> None:
    run_boxpack("publish", boxes[0], "--to", web.to, "--name", NAME, "--box-version", "1.0.0", "--base-url", web.base_url,
                "--sign-key", keys / "ci")
    run_boxpack("publish", boxes[1], "--to", web.to, "--name", NAME, "--box-version", "1.1.0", "--base-url", web.base_url,
                "--sign-key", keys / "evil")
    run_boxpack("publish", boxes[1], "--to", web.to, "--name", NAME, "--box-version", "1.2.0", "--base-url", web.base_url)
    to = tmp_path / "mirror"
    to.mkdir()
    proc = run_boxpack("mirror", f"{web.base_url}/{NAME}", "--to", to, "--base-url", "https://mirror.example", "--json",
                       "--signed-by", keys / "allowed_signers", check=False)
    report = {b["version"]: b for b in json.loads(proc.stdout)["boxes"]}
    assert proc.returncode == 1 and report["1.0.0"]["action"] == "copied" and report["1.0.0"]["signer"] == "ci@acme"
    assert report["1.1.0"]["action"] == "failed" and "not permitted for use in signature namespace" in report["1.1.0"]["error"]
    assert report["1.2.0"]["action"] == "failed" and "no signature" in report["1.2.0"]["error"]
    copied = to / NAME / "1.0.0/libvirt/amd64/vagrant.box"
    assert oracle(keys, copied, Path(f"{copied}.sig")).returncode == 0
    assert not (to / NAME / "1.1.0").exists() or not list((to / NAME / "1.1.0").rglob("*.box"))


# --- the Vagrant plugin (vagrant-plugin/): real Vagrant 2.3.4 and 2.4.9 ---------------------------------------------

@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    """The vagrant-boxpack gem, built with `gem build` from the gemspec in vagrant-plugin/ (a copy: the tree stays clean)."""
    if not shutil.which("gem"):
        unavailable("gem", "not installed (apt-get install ruby)")
    d = tmp_path_factory.mktemp("plugin") / "src"
    shutil.copytree(ROOT / "vagrant-plugin", d)
    subprocess.run(["gem", "build", "vagrant-boxpack.gemspec"], cwd=d, check=True, capture_output=True)
    return next(d.glob("vagrant-boxpack-*.gem"))


@pytest.mark.first_case_quick()  # 2.3.4 in the quick tier, 2.4.9 with -m slow
def test_vagrant_with_the_plugin_adds_only_boxes_an_allowed_key_signed(vagrant: Vagrant, plugin: Path, web: Target,
                                                                       keys: Path, boxes: list[Path], tmp_path: Path) -> None:
    """Private boxes through boxpack serve (the signature fetched with the token Vagrant sends that host): a good one
    is added and its signer named; one signed by a key not allowed, one without a signature, one carrying another
    box's, and a good one once its signer is revoked are refused with one line naming the signature and are not in
    `vagrant box list`; the Vagrantfile's setting works as the variable does; without either nothing changes."""
    for version, box, key in (("1.0.0", boxes[0], "ci"), ("1.1.0", boxes[1], "evil"), ("1.2.0", boxes[1], None),
                              ("1.3.0", boxes[1], "ci")):
        publish(web, box, NAME, version, "--private", *(("--sign-key", str(keys / key)) if key else ()))
    stored = web.root / NAME
    (stored / "1.3.0/libvirt/amd64/vagrant.box.sig").write_bytes((stored / "1.0.0/libvirt/amd64/vagrant.box.sig").read_bytes())
    revoked = tmp_path / "revoked"
    revoked.write_text("".join(line + "\n" for line in (keys / "allowed_signers").read_text().splitlines()
                               if not line.startswith("ci@")))
    home = tmp_path / "vagrant.d"
    installed = vagrant(home, "plugin", "install", str(plugin), "--plugin-clean-sources")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    served = Served(web, tmp_path, workers=1)
    try:
        env = {"VAGRANT_CLOUD_TOKEN": token(web, "acme"), "VAGRANT_BOXPACK_ALLOWED_SIGNERS": str(keys / "allowed_signers")}

        def add(version: str, cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess:
            return vagrant(home, "box", "add", NAME, "--box-version", version, "--provider", "libvirt", server=served.url,
                           env={**env, **extra}, cwd=cwd)

        for version, extra, said in (("1.1.0", {}, "not permitted for use in signature namespace"), ("1.2.0", {}, "could not be fetched"),
                                     ("1.3.0", {}, "does not verify as a vagrant-box signature of this box by ci@acme"),
                                     ("1.0.0", {"VAGRANT_BOXPACK_ALLOWED_SIGNERS": str(revoked)}, "is not by a key")):
            refused = add(version, **extra)
            assert refused.returncode == 1 and said in refused.stderr, refused.stdout + refused.stderr
            assert refused.stderr.strip().count("\n") == 0 and f"/{version}/libvirt/amd64/vagrant.box.sig " in refused.stderr
        good = add("1.0.0")
        assert good.returncode == 0 and 'Good "vagrant-box" signature for ci@acme' in good.stdout, good.stdout + good.stderr
        listed = vagrant(home, "box", "list").stdout
        assert "1.0.0" in listed and not any(v in listed for v in ("1.1.0", "1.2.0", "1.3.0")), listed
        project = tmp_path / "project"
        project.mkdir()
        (project / "Vagrantfile").write_text(f'Vagrant.configure("2") {{ |c| c.boxpack.allowed_signers = "{revoked}" }}\n')
        refused = add("1.3.0", cwd=project, VAGRANT_BOXPACK_ALLOWED_SIGNERS="")
        assert refused.returncode == 1 and "is not by a key" in refused.stderr, refused.stdout + refused.stderr
        plain = add("1.2.0", VAGRANT_BOXPACK_ALLOWED_SIGNERS="")
        assert plain.returncode == 0 and "Signature" not in plain.stdout, plain.stdout + plain.stderr
    finally:
        served.stop()
