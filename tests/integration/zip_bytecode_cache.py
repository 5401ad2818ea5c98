"""A bytecode cache for the modules Ansible runs in the tests' bare interpreter (the bare_python fixture
installs this file in that virtualenv, with a .pth line that imports it at startup).

Ansible ships each module with its module_utils in a zip file (AnsiballZ) that Python imports with
zipimport, which never writes or reads a .pyc for source in an archive: every module run compiles
ansible.module_utils.basic and the rest from source, each of them twice (zipimport's get_filename
compiles the module, then get_code compiles it again). That was most of the CPU time of a module
run here, and an integration test runs thousands of them.

This keeps zipimport's own code path and replaces only its compile step: the code object of a source
file is looked up by the SHA-256 of the interpreter's bytecode magic number and the source's bytes (what
compile() makes of it depends on nothing else here) in a directory beside the interpreter, else
compiled as zipimport does and stored there; its file name is set to the archive's path of this run.
So a module runs exactly the code of its payload, compiled by this interpreter: what a .pyc is for
files on disk. Any error (an unwritable cache for another user, a damaged entry) falls back to
compiling, as zipimport would have.
"""

import hashlib
import importlib.util
import marshal
import os
import sys
import types
import zipimport

CACHE = os.path.join(sys.prefix, "zip-bytecode-cache")
_compile = getattr(zipimport, "_compile_source", None)
_seen = {}


def _renamed(code, filename):
    consts = tuple(_renamed(const, filename) if isinstance(const, types.CodeType) else const
                   for const in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _cached_compile(pathname, source):
    key = hashlib.sha256(importlib.util.MAGIC_NUMBER + b"\0" + source).hexdigest()
    code = _seen.get(key)
    if code is None:
        entry = os.path.join(CACHE, key)
        try:
            with open(entry, "rb") as cached:
                code = marshal.load(cached)
        except Exception:  # pylint: disable=broad-except  # no entry, or a damaged one: compile
            code = None
        if not isinstance(code, types.CodeType):
            code = _compile(pathname, source)
            try:
                partial = "%s.%d.tmp" % (entry, os.getpid())
                with open(partial, "wb") as out:
                    marshal.dump(code, out)
                os.replace(partial, entry)
            except Exception:  # pylint: disable=broad-except  # not ours to write (another user): compile next time
                pass
        _seen[key] = code
    return code if code.co_filename == pathname else _renamed(code, pathname)


if _compile is not None and os.path.isdir(CACHE):
    zipimport._compile_source = _cached_compile  # pylint: disable=protected-access
