"""tests/tools/release, which `make docs-lint` (check) and `make release` (prepare) run, on a copy of the collection.

The checkout passes the check; a copy whose changelog.yaml gained a release without regenerating CHANGELOG.rst,
whose galaxy.yml is older than a version_added (main's state before issue 16: 0.1.0 against 0.2.0 docs) or older
than the newest release, fails, naming the file. `prepare` on a copy makes a release that then passes the check.
"""

import shutil
import subprocess
import sys

import pytest
import yaml

from provisioning import REPO

pytestmark = pytest.mark.one_backend
RELEASE = REPO / "tests" / "tools" / "release"


@pytest.fixture
def collection(tmp_path):
    """The files the release tool and antsibull-changelog read, with CHANGELOG.rst as committed."""
    root = tmp_path / "toolkit"
    root.mkdir()
    for name in ("galaxy.yml", "CHANGELOG.rst"):
        shutil.copy2(REPO / name, root / name)
    for name in ("changelogs", "meta", "plugins", "roles"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", ".plugin-cache.yaml"))
    return root


def release(root, *args):
    return subprocess.run([sys.executable, str(RELEASE), "--root", str(root), *args],
                          capture_output=True, text=True, check=False)


def edit_yaml(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def set_galaxy_version(root, version):
    edit_yaml(root / "galaxy.yml", lambda data: data.update(version=version))


def newest_release(root):
    releases = yaml.safe_load((root / "changelogs" / "changelog.yaml").read_text())["releases"]
    return max(releases, key=lambda version: tuple(int(part) for part in version.split(".")))


def test_the_checkout_is_consistent(collection):
    result = release(collection, "check")
    assert result.returncode == 0, result.stderr


def test_a_release_that_did_not_regenerate_the_changelog_fails(collection):
    set_galaxy_version(collection, "9.0.0")
    edit_yaml(collection / "changelogs" / "changelog.yaml", lambda data: data["releases"].update(
        {"9.0.0": {"changes": {"release_summary": "Forgot to regenerate."}, "release_date": "2026-12-06"}}))
    result = release(collection, "check")
    assert result.returncode == 1
    assert "CHANGELOG.rst is not what changelogs/changelog.yaml renders" in result.stderr
    assert "+v9.0.0" in result.stderr


def test_galaxy_version_older_than_the_docs_fails(collection):
    set_galaxy_version(collection, "0.1.0")
    result = release(collection, "check")
    assert result.returncode == 1
    assert "galaxy.yml's version is 0.1.0, yet the docs add things in later versions" in result.stderr
    assert "plugins/modules/oauth_applications.py: version_added 0.2.0" in result.stderr


def test_galaxy_version_older_than_the_newest_release_fails(collection):
    set_galaxy_version(collection, "0.0.1")
    result = release(collection, "check")
    assert result.returncode == 1
    assert "galaxy.yml's version 0.0.1 is older than the newest release in changelogs/changelog.yaml" in result.stderr


def test_prepare_refuses_an_old_version_and_a_release_without_summary(collection):
    result = release(collection, "prepare", newest_release(collection))
    assert result.returncode == 1 and "is not later than the newest release" in result.stderr
    for fragment in (collection / "changelogs" / "fragments").glob("*.y*ml"):
        edit_yaml(fragment, lambda data: data.pop("release_summary", None))
    result = release(collection, "prepare", "9.0.0")
    assert result.returncode == 1 and "no fragment has a release_summary" in result.stderr
    assert yaml.safe_load((collection / "galaxy.yml").read_text())["version"] != "9.0.0"


def test_prepare_makes_a_release_the_check_accepts(collection):
    fragments = collection / "changelogs" / "fragments"
    # A checkout between writing its own release summary and releasing has one already: one summary a release.
    for fragment in fragments.glob("*.y*ml"):
        edit_yaml(fragment, lambda data: data.pop("release_summary", None))
    (fragments / "9.0.0.yml").write_text("release_summary: A release made by the test.\n")
    result = release(collection, "prepare", "9.0.0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert yaml.safe_load((collection / "galaxy.yml").read_text())["version"] == "9.0.0"
    assert newest_release(collection) == "9.0.0"
    assert "v9.0.0\n======\n\nRelease Summary\n---------------\n\nA release made by the test." in (
        collection / "CHANGELOG.rst").read_text()
    assert not list(fragments.glob("*.y*ml"))
    assert release(collection, "check").returncode == 0
