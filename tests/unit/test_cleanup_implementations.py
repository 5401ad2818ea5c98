"""The cleanup engine trusts DOT's clear_expired() for what it is, not for the version DOT claims.

Its rules are used only for a clear_expired() whose fingerprint is one the differential tests
proved (PROVEN_IMPLEMENTATIONS); anything else runs DOT's own function. Here: how versions and
fingerprints map to rule sets, what the fingerprint ignores and what it does not, that it is the
same on every Python, and two real DOTs that say 3.4.1 and are not the proven one: a patched copy
of the installed DOT, and DOT's main branch (when --dot-source points at it). Those two run
test_the_installed_clear_expired_decides_the_rules in an interpreter of their own, on this
session's backend and a database of their own.
"""

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning import REPO

INSTALLED_TEST = "tests/unit/test_cleanup_differential.py::test_the_installed_clear_expired_decides_the_rules"
# A plausible local patch: expired access tokens go even while a refresh token still points at them.
PATCH = (
    "access_token_query = models.Q(refresh_token__isnull=True, expires__lt=now)",
    "access_token_query = models.Q(expires__lt=now)",
)


def side():
    from oauthops_django_side import _django_cleanup, _django_cleanup_rules, _django_core

    return _django_core, _django_cleanup, _django_cleanup_rules


@pytest.mark.parametrize(
    "version, fingerprint, rules",
    [
        ("2.2.0", "1547fa470e1e173b", "2.0"),
        ("1.7.1", "1547fa470e1e173b", "2.0"),  # ships the function of 2.0.0 to 2.2.0
        ("2.4.0", "2cd1589f2e0029c9", "2.3"),
        ("3.3.0", "2cd1589f2e0029c9", "2.3"),  # only the spacing in an f-string differs from 2.4.0
        ("3.4.0", "76f56431aa0ef5db", "3.4.0"),
        ("3.4.1", "139e9933482f01cc", "3.4.1"),
        ("9.0.0", "139e9933482f01cc", "3.4.1"),  # a later release that keeps 3.4.1's function
        ("3.4.1", "76f56431aa0ef5db", "3.4.0"),  # says 3.4.1, runs 3.4.0's function
        ("3.4.1", "4ae9149817df8730", "clear_expired"),  # DOT's main branch at 0f9d49f4: it also deletes PARs
        ("3.4.1", "0123456789abcdef", "clear_expired"),  # a fork or a patch
        ("3.4.1", None, "clear_expired"),  # no readable source (bytecode only, not a plain function)
        ("1.6.3", "bdd1b19ee2b3c64e", "clear_expired"),  # older rules, never proven
    ],
)
def test_the_fingerprint_not_the_version_picks_the_rules(monkeypatch, version, fingerprint, rules):
    core, cleanup = side()[:2]
    monkeypatch.setattr(cleanup, "installed_dot_version", lambda: version)
    monkeypatch.setattr(cleanup, "installed_clear_expired_fingerprint", lambda: fingerprint)
    context = core.Context("default", True)
    result = cleanup.run_token_cleanup({}, context)
    assert (result["rules"], result["dot_version"], result["clear_expired_fingerprint"]) == (rules, version, fingerprint)
    if rules == "clear_expired":
        assert result["total"] is None
        about = "fingerprint %s" % fingerprint if fingerprint else "its source cannot be read"
        assert "installed django-oauth-toolkit %s (%s) is not one" % (version, about) in context.warnings[0]
    else:
        assert result["total"] == 0 and not context.warnings


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ORIGINAL = '''
def clear_expired():
    now = timezone.now()
    logger.debug(f"{left-gone} left")
    return models.Q(expires__lt=now)
'''
SAME_CODE = '''
import functools

# Laid out differently, commented, quoted differently.
def clear_expired():

    now = timezone.now()  # once
    logger.debug(f'{left - gone} left')
    return models.Q(
        expires__lt=now,
    )
'''
OTHER_CODE = [
    ORIGINAL.replace("expires__lt", "expires__lte"),
    ORIGINAL.replace("    now =", '    """Now with a docstring."""\n    now ='),
    ORIGINAL.replace("def clear_expired", "@functools.lru_cache()\ndef clear_expired"),
]


def test_the_fingerprint_is_of_the_code_not_its_layout(tmp_path):
    rules = side()[2]
    original = rules.source_fingerprint(ORIGINAL, "clear_expired")
    assert len(original) == 16
    assert rules.source_fingerprint(SAME_CODE, "clear_expired") == original
    assert len({original} | {rules.source_fingerprint(source, "clear_expired") for source in OTHER_CODE}) == 4
    assert rules.source_fingerprint(ORIGINAL, "cleartokens") is None

    # From a live function: its own code, not what a functools.wraps wrapper points at.
    path = tmp_path / "fingerprinted.py"
    path.write_text(
        "import functools\n" + ORIGINAL + "\n\n@functools.wraps(clear_expired)\ndef wrapper():\n    return 1\n"
    )
    module = load_module(path, "fingerprinted")
    assert rules.function_fingerprint(module.clear_expired) == original
    assert rules.function_fingerprint(module.wrapper) not in (None, original)
    assert rules.function_fingerprint(functools.partial(module.clear_expired)) is None


def other_pythons():
    """Every Python 3.8 or later that pyenv has besides this one: the Django side runs on any."""
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return []
    found = []
    for version in sorted(Path(root, "versions").glob("3.*")):
        minor = ".".join(version.name.split(".")[:2])
        binary = version / "bin" / ("python" + minor)
        if int(minor.split(".")[1]) >= 8 and binary.is_file() and binary.resolve() != Path(sys.executable).resolve():
            found.append(str(binary))
    return found


def test_the_fingerprint_is_the_same_on_every_python():
    import oauth2_provider.models

    rules = side()[2]
    pythons = other_pythons()
    if not pythons:
        pytest.skip(
            "only one Python 3.8+ here, so the fingerprint cannot be compared across Python versions; "
            "install another with pyenv (CI machines have 3.8 to 3.13)"
        )
    script = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('rules', sys.argv[1])\n"
        "rules = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(rules)\n"
        "print(rules.source_fingerprint(open(sys.argv[2], encoding='utf-8').read(), 'clear_expired'))\n"
    )
    expected = rules.installed_clear_expired_fingerprint()
    for python in pythons:
        printed = subprocess.run(
            [python, "-c", script, rules.__file__, oauth2_provider.models.__file__],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert printed == expected, "Python %s computes %s" % (python, printed)


def run_installed_test(config, python, **env):
    """test_the_installed_clear_expired_decides_the_rules in `python`, on this session's backend, expecting
    DOT's own clear_expired()."""
    child_env = dict(os.environ, **env)
    completed = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--backend", config.oauthops_unit_backend,
         "--expect-rules", "clear_expired", INSTALLED_TEST],
        cwd=REPO,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0 and "1 passed" in completed.stdout, output[-6000:]


def test_a_patched_dot_that_still_says_3_4_1_runs_its_own_clear_expired(tmp_path, pytestconfig):
    import oauth2_provider

    rules = side()[2]
    if rules.rule_set_for(rules.installed_clear_expired_fingerprint()) is None:
        pytest.skip(
            "the installed DOT is not a proven release, so there is no proven clear_expired() to patch; "
            "the fallback is checked by test_the_fingerprint_not_the_version_picks_the_rules"
        )
    copy = tmp_path / "patched" / "oauth2_provider"
    shutil.copytree(Path(oauth2_provider.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    models = copy / "models.py"
    source = models.read_text(encoding="utf-8")
    assert source.count(PATCH[0]) == 1, "the line to patch is not in the installed DOT's clear_expired()"
    models.write_text(source.replace(*PATCH), encoding="utf-8")
    assert rules.rule_set_for(rules.source_fingerprint(models.read_text(encoding="utf-8"), "clear_expired")) is None
    run_installed_test(pytestconfig, sys.executable, PYTHONPATH=str(copy.parent))


def test_dots_main_branch_runs_its_own_clear_expired(pytestconfig):
    source = pytestconfig.getoption("dot_source")
    if not source:
        pytest.skip(
            "run with --dot-source DIR, DIR DOT's main branch (a source tree or a git repository) to run "
            "this; CI cannot fetch it (no GitHub access), so there the fallback is proven on a patched "
            "3.4.1 instead"
        )
    built = subprocess.run(
        [str(REPO / "tests" / "tools" / "dot-venv"), source],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    run_installed_test(pytestconfig, built.stdout.strip().splitlines()[-1])
