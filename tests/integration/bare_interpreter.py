"""The bare interpreter Ansible runs the integration tests' modules with: a virtualenv with nothing installed,
so that it cannot import Django, plus the bytecode cache of zip_bytecode_cache.py for Ansible's zipped modules."""

import shutil
import subprocess
from pathlib import Path

from provisioning import REPO


def bare_virtualenv(home, interpreter):
    """A bare virtualenv of `interpreter` at `home`, with the bytecode cache for Ansible's zipped modules; its python."""
    subprocess.run([str(REPO / "tests" / "tools" / "mkvenv"), str(home), "--python", str(interpreter), "--bare"],
                   check=True, capture_output=True)
    python = home / "bin" / "python"
    probe = subprocess.run([python, "-c", "import django"], capture_output=True, check=False)
    assert probe.returncode != 0, "the bare virtualenv must not see Django"
    # Each module run compiles Ansible's module_utils from its zip payload (zipimport keeps no .pyc):
    # zip_bytecode_cache.py keeps the compiled code in the venv, keyed by the source's hash.
    site_packages = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    shutil.copy(Path(__file__).resolve().parent / "zip_bytecode_cache.py", site_packages)
    Path(site_packages, "zip_bytecode_cache.pth").write_text("import zip_bytecode_cache\n")
    (home / "zip-bytecode-cache").mkdir()
    return str(python)
