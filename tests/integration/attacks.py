"""What the application user does to root, and what root must never touch: shared by the tests that
attack the token_cleanup role and the trusted_file module (test_root_safety.py, test_trusted_file.py).

The attacker is the unprivileged test user, acting with its own rights (setpriv, see cronjobs.as_user).
A victim is root's: after every root run it must keep its owner, mode and content, a directory its
listing and every entry's.
"""

import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from cronjobs import as_user


def fingerprint(path):
    """What an attack through `path` would change: mode, owner, group, and content (a directory: every
    entry's fingerprint)."""
    path = Path(path)
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode):
        content = {entry.name: fingerprint(entry) for entry in sorted(path.iterdir())}
    elif stat.S_ISLNK(info.st_mode):
        content = os.readlink(path)
    else:
        content = path.read_bytes()
    return stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, info.st_nlink, content


@pytest.fixture
def victims(scratch, tmp_path):
    """A root-only file and directory, each with a fingerprint to compare against."""
    home = Path(scratch) / ("victims-" + tmp_path.name)
    home.mkdir(mode=0o755)
    victim_file = home / "passwd"
    victim_file.write_text("root:x:0:0:root:/root:/bin/bash\n")
    victim_file.chmod(0o644)
    victim_dir = home / "etc"
    victim_dir.mkdir(mode=0o755)
    (victim_dir / "keep").write_text("keep\n")
    victims = {"file": victim_file, "dir": victim_dir}
    before = {name: fingerprint(path) for name, path in victims.items()}
    yield victims
    assert {name: fingerprint(path) for name, path in victims.items()} == before, "root wrote through a planted link"
    shutil.rmtree(home)


def owned_by(user, path, mode=0o755):
    path.mkdir(mode=mode)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def plant_link(user, link, target):
    subprocess.run(as_user(user, ["ln", "-s", "--", str(target), str(link)]), check=True)


def acl_granting_write(uid):
    """The raw system.posix_acl_access value of `setfacl -m u:UID:rwx` on a 0755 directory (for a test that
    flips it faster than setfacl could start)."""
    undefined = 0xFFFFFFFF
    entries = [(0x01, 7, undefined), (0x02, 7, uid), (0x04, 5, undefined), (0x10, 7, undefined), (0x20, 5, undefined)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)
