"""Which environment values are secret, how messages are scrubbed of them, and how env_file is read."""

import importlib
import os
import subprocess
import sys

import pytest


def django_env():
    """The shipped _django_env (on sys.path once the session's fixture has laid the package out)."""
    return importlib.import_module("oauthops_django_side._django_env")


def core():
    return importlib.import_module("oauthops_django_side._django_core")


def secret_values(environment):
    return django_env().secret_values(environment)


def read_env_file(path):
    return django_env().read_env_file(path)


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("DATABASE_PASSWORD", "hunter22", True),
        ("db_passwd", "hunter22", True),
        ("DJANGO_SECRET_KEY", "abc", True),
        ("GITHUB_TOKEN", "ghp", True),
        ("API_KEY", "k", True),
        ("AWS_CREDENTIALS", "c", True),
        ("SENTRY_DSN", "https://key@sentry.example/1", True),
        ("PGPASSWORD", "hunter22", True),
        ("SECRETKEY", "abc", True),
        # PASS and PWD as words of the name, not as substrings.
        ("MYSQL_PWD", "hunter22", True),
        ("DB_PASS", "hunter22", True),
        ("REDIS_PASS2", "hunter22", True),
        ("smtp-pass", "hunter22", True),
        ("dbPass", "hunter22", True),
        ("DBPass", "hunter22", True),
        ("PASS", "hunter22", True),
        ("PASSPORT_NUMBER", "X1234567", False),
        ("COMPASS_URL", "https://compass.example", False),
        ("BYPASS_CACHE", "1", False),
        ("PASSENGER_APP_ENV", "production", False),
        ("PGPASSFILE", "/srv/shop/.pgpass", False),
        ("OLDPWD", "/srv", False),
        ("PWD", "/srv/shop", False),  # the shell's working directory
        ("DJANGO_DEBUG", "0", False),
        ("PORT", "10000", False),
        ("DB_ENGINE", "sqlite", False),
        ("DATABASE_PASSWORD", "", False),  # nothing to hide, and masking "" would mask everything
    ],
)
def test_secret_by_name(name, value, secret):
    assert (value in secret_values({name: value})) is secret
    assert django_env().is_secret(name, value) is secret


@pytest.mark.parametrize(
    ("url", "passwords"),
    [
        ("postgres://shop@db.example/shop?password=s3cr3t-Pw", ["s3cr3t-Pw"]),
        ("postgres://shop@db.example/shop?sslmode=verify-full&sslpassword=k3y-Pass", ["k3y-Pass"]),
        ("postgresql://db.example/shop?user=shop&password=p%40ss-w0rd#frag", ["p%40ss-w0rd", "p@ss-w0rd"]),
        ("mysql://shop@db.example/shop?pwd=hunter22&charset=utf8", ["hunter22"]),
        ("redis://cache.example/0?token=tok-123456", ["tok-123456"]),
        ("postgres://shop:userinfo-Pw@db.example/shop?password=query-Pw", ["userinfo-Pw", "query-Pw"]),
    ],
)
def test_a_url_with_a_password_query_parameter_is_secret_whatever_its_name(url, passwords):
    found = secret_values({"DATABASE_URL": url})
    assert set([url] + passwords) <= set(found)
    assert django_env().is_secret("DATABASE_URL", url)
    assert django_env().scrub("could not connect to %s" % url, found) == "could not connect to %s" % django_env().MASK


@pytest.mark.parametrize(
    "url",
    [
        "postgres://shop@db.example/shop?sslmode=require&passfile=/srv/shop/.pgpass",
        "postgres://shop@db.example/shop?password=",
        "https://example.com/login?next=/account&compass=north",
        "not a url ?password=no",
    ],
)
def test_urls_without_a_password_are_ordinary(url):
    assert secret_values({"HOME_URL": url}) == []
    assert not django_env().is_secret("HOME_URL", url)


def test_the_cron_job_scrubs_by_the_same_rule(tmp_path):
    """_django_cleanup_job reads --env-json and --env-file and scrubs their secrets as the modules mask them."""
    import argparse
    import json

    job = importlib.import_module("oauthops_django_side._django_cleanup_job")
    env_json = tmp_path / "environment.json"
    env_json.write_text(json.dumps({"DB_PASS": "json-pass-value", "REFRESH_TOKEN_GRACE_SECONDS": "0", "PORT": "5432"}))
    env_file = tmp_path / "project.env"
    env_file.write_text("MYSQL_PWD=file-pwd-value\nDATABASE_URL=postgres://u@h/db?password=url-pass-value\n")
    found = job.known_secrets(argparse.Namespace(env_json=str(env_json), env_file=str(env_file)))
    assert {"json-pass-value", "file-pwd-value", "url-pass-value"} <= set(found)
    assert "5432" not in found


def test_a_url_with_a_password_is_secret_whatever_its_name():
    url = "postgres://shop:Pw7K%2Fq@Lm/Zx9R@db.example:5432/shop"
    found = secret_values({"DATABASE_URL": url})
    # The URL, its password as written and decoded, and its pieces of 4 characters or more.
    assert {url, "Pw7K%2Fq@Lm/Zx9R", "Pw7K/q@Lm/Zx9R", "Pw7K%2Fq", "Zx9R"} <= set(found)
    assert "Lm" not in found
    assert secret_values({"HOMEPAGE": "https://example.com/a:b@c"}) == []
    assert secret_values({"BROKER": "amqp://guest@rabbit//"}) == []  # a user, no password


def test_scrub_replaces_longest_first_and_leaves_other_text():
    found = secret_values({"DATABASE_URL": "postgres://u:Pw7Kq2Lm/Zx9Rt4V@h/db"})
    message = "Port could not be cast to integer value as 'Pw7Kq2Lm'; url postgres://u:Pw7Kq2Lm/Zx9Rt4V@h/db; 42"
    mask = django_env().MASK
    assert django_env().scrub(message, found) == "Port could not be cast to integer value as '%s'; url %s; 42" % (mask, mask)
    assert django_env().scrub(7, found) == 7
    # Secrets of two sources, given shortest first: the longer one is still masked whole.
    assert django_env().scrub("key xxabcdyy", ["abcd", "xxabcdyy"]) == "key %s" % mask


def test_env_file_format(tmp_path):
    env_file = tmp_path / "project.env"
    env_file.write_text(
        "# comment\n; another\n\nPLAIN=value with spaces\nexport EXPORTED=1\nDOUBLE=\"quoted # not a comment\"\n"
        "SINGLE='it''s'\nEMPTY=\nEQUALS=a=b\n  INDENTED = x \n"
    )
    assert read_env_file(str(env_file)) == {
        "PLAIN": "value with spaces",
        "EXPORTED": "1",
        "DOUBLE": "quoted # not a comment",
        "SINGLE": "it''s",
        "EMPTY": "",
        "EQUALS": "a=b",
        "INDENTED": "x",
    }


@pytest.mark.parametrize("line", ["no equals sign", "BAD-NAME=x", "=value", "1ST=x"])
def test_env_file_errors_name_the_line_never_its_text(tmp_path, line):
    env_file = tmp_path / "project.env"
    env_file.write_text("GOOD=1\n%s\n" % line)
    with pytest.raises(core().OperationError) as error:
        read_env_file(str(env_file))
    assert error.value.message == "env_file %s, line 2: expected NAME=value" % env_file
    with pytest.raises(core().OperationError, match="cannot read env_file .*missing.env .No such file or directory."):
        read_env_file(str(tmp_path / "missing.env"))


ONE_MIB = 1024 * 1024


def test_env_file_of_exactly_one_mib_is_read_and_one_byte_more_is_refused(tmp_path):
    env_file = tmp_path / "project.env"
    line = "PADDING=" + "x" * 1000 + "\n"
    body = line * (ONE_MIB // len(line))
    env_file.write_text(body + "LAST=" + "y" * (ONE_MIB - len(body) - len("LAST=")))
    assert env_file.stat().st_size == ONE_MIB
    assert read_env_file(str(env_file))["LAST"].startswith("y")
    with open(env_file, "a") as handle:
        handle.write("y")
    with pytest.raises(core().OperationError) as error:
        read_env_file(str(env_file))
    assert error.value.message == "env_file %s is larger than 1 MiB" % env_file


def test_env_file_must_be_a_regular_file_and_a_link_to_one_is_fine(tmp_path):
    env_file = tmp_path / "shared.env"
    env_file.write_text("NAME=value\n")
    link = tmp_path / "app.env"
    link.symlink_to(env_file)
    assert read_env_file(str(link)) == {"NAME": "value"}
    fifo = tmp_path / "fifo.env"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer
    device_link = tmp_path / "device.env"
    device_link.symlink_to("/dev/null")
    for path in (tmp_path, fifo, device_link, "/dev/null"):
        with pytest.raises(core().OperationError) as error:
            read_env_file(str(path))
        assert error.value.message == "env_file %s is not a regular file" % path


def test_env_file_dev_zero_is_refused_at_once():
    """A run with a memory limit, so that a regression fails here instead of filling the machine's memory."""
    package = os.path.dirname(os.path.dirname(django_env().__file__))
    probe = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from oauthops_django_side._django_core import OperationError\n"
        "from oauthops_django_side._django_env import read_env_file\n"
        "try:\n    read_env_file('/dev/zero')\nexcept OperationError as exc:\n    print(exc.message)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], env=dict(os.environ, PYTHONPATH=package),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert (completed.returncode, completed.stdout) == (0, "env_file /dev/zero is not a regular file\n"), completed.stderr


def test_the_cron_jobs_environment_file_has_the_same_bounds(tmp_path):
    job = importlib.import_module("oauthops_django_side._django_cleanup_job")
    environment = tmp_path / "environment.json"
    environment.write_text('{"PADDING": "%s"}' % ("x" * ONE_MIB))
    with pytest.raises(core().OperationError) as error:
        job.load_environment(str(environment))
    assert error.value.message == "the environment file %s is larger than 1 MiB" % environment
    with pytest.raises(core().OperationError) as error:
        job.load_environment("/dev/zero")
    assert error.value.message == "the environment file /dev/zero is not a regular file"
    environment.write_text('{"DB_PASS": "s3cret", "PORT": 5432}')
    assert job.load_environment(str(environment)) == {"DB_PASS": "s3cret", "PORT": "5432"}


def test_env_file_yields_to_the_environment_option_and_extends_sys_path(tmp_path, monkeypatch):
    env_file = tmp_path / "project.env"
    env_file.write_text("OAUTHOPS_UNIT_A=from-file\nOAUTHOPS_UNIT_B=from-file\nPYTHONPATH=/srv/a:/srv/b\n")
    monkeypatch.setenv("OAUTHOPS_UNIT_A", "from-option")
    monkeypatch.setattr(sys, "path", list(sys.path))
    django_env().apply_env_file(str(env_file), ["OAUTHOPS_UNIT_A"])
    assert (os.environ["OAUTHOPS_UNIT_A"], os.environ["OAUTHOPS_UNIT_B"]) == ("from-option", "from-file")
    assert sys.path[-2:] == ["/srv/a", "/srv/b"]
    monkeypatch.delenv("OAUTHOPS_UNIT_B")

    env_file.write_text("DJANGO_SETTINGS_MODULE=other.settings\n")
    with pytest.raises(core().OperationError, match="sets DJANGO_SETTINGS_MODULE=other.settings, but the settings"):
        django_env().apply_env_file(str(env_file), [])


def test_scrub_leaves_plain_values_of_secret_names_alone():
    """REFRESH_TOKEN_GRACE_SECONDS=0 or TOKEN_LIMIT=1 are secret by name, but masking every 0 and 1 of a
    message would garble its counts: numbers, booleans and values shorter than four characters stay."""
    environment = {
        "REFRESH_TOKEN_GRACE_SECONDS": "0",
        "ACCESS_TOKEN_EXPIRE_SECONDS": "36000",
        "TOKEN_LIMIT": "1",
        "SECRET_KEY_FALLBACK": "true",
        "API_KEY": "abc",
        "DB_PASS": "long-s3cret-value",
    }
    message = "1 of 3 applications failed (0 changed, true, 36000 s, abc): long-s3cret-value refused"
    assert django_env().scrub(message, secret_values(environment)) == (
        "1 of 3 applications failed (0 changed, true, 36000 s, abc): %s refused" % django_env().MASK
    )
