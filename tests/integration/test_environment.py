"""The `environment` and `env_file` options through real ansible-playbook runs: what is masked, what
is not, and where secrets never appear (every output at -vvv --diff, and the process list)."""

import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from secret_leaks import check_masking

# A password with an unencoded '/': URL parsers read a piece of it as the port.
BROKEN_PASSWORD = "Pw7Kq2Lm/Zx9Rt4V"


def env_file_for(playbook, extra):
    lines = ["# the project's own file", ""] + ["%s=%s" % item for item in dict(playbook.django_env(), **extra).items()]
    path = playbook.workdir / "project.env"
    path.write_text("\n".join(lines) + "\n")
    return path


def secrets_in(text, values):
    return [value for value in values if value in text]


def test_ordinary_values_stay_ordinary_and_secrets_secret(playbook):
    canary_token = "tok-" + secrets.token_hex(8)
    env_secret = "envfile-" + secrets.token_hex(8)
    env_file = env_file_for(playbook, {"OAUTHOPS_TEST_SECRET_KEY": env_secret})
    broken_url = "postgres://shop:%s@db.example/shop" % BROKEN_PASSWORD
    Path(str(env_file) + ".broken").write_text(
        env_file.read_text() + "OAUTHOPS_TEST_DATABASE_URL='%s'\n" % broken_url
    )
    extra_path = playbook.workdir / "extra"
    extra_path.mkdir()
    (extra_path / "extra_settings.py").write_text("from testproject.settings import *  # noqa\n")

    big_env_file = playbook.workdir / "big.env"
    big_env_file.write_text(("PADDING=%s\n" % ("x" * 1000)) * 1100)
    output = playbook.run(
        "environment.yml",
        {"env_file": str(env_file), "extra_path": str(extra_path), "canary_token": canary_token,
         "broken_url": broken_url, "big_env_file": str(big_env_file)},
        "-vvv", "--diff",
        # Results carry the module's arguments (ansible-core 2.19+ leaves them out by default).
        environ={"ANSIBLE_INJECT_INVOCATION": "true"},
    )
    # The ordinary values are shown as they are, in the module arguments that the results carry; the
    # secret one is masked there, and nothing else is masked anywhere.
    assert '"DJANGO_DEBUG": "0"' in output and '"OAUTHOPS_TEST_PORT": "10000"' in output
    masked = re.findall(r'"(\w+)": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"', output)
    assert set(masked) == {"OAUTHOPS_TEST_API_TOKEN", "OAUTHOPS_TEST_DATABASE_URL"}
    assert output.count("VALUE_SPECIFIED_IN_NO_LOG_PARAMETER") == len(masked)
    leaked = secrets_in(output, [canary_token, env_secret, broken_url, BROKEN_PASSWORD] + BROKEN_PASSWORD.split("/"))
    assert leaked == [], "secrets in the output"


# One backend: the Django side's command line is made by the bridge, which sends the request on stdin
# whatever the database.
@pytest.mark.one_backend
def test_secrets_never_reach_the_process_list(playbook):
    canary_token = "tok-" + secrets.token_hex(8)
    env_secret = "envfile-" + secrets.token_hex(8)
    env_file = env_file_for(playbook, {"OAUTHOPS_TEST_SECRET_KEY": env_secret})
    subprocess.run(
        [playbook.project_python(), "manage.py", "oauthops_seed_tokens", playbook.prefix + "-ps"],
        cwd=playbook.project_path(), env=dict(os.environ, **playbook.django_env()), check=True,
    )
    process = playbook.start(
        "slow_cleanup.yml", {"env_file": str(env_file), "canary_token": canary_token}
    )
    seen_django_side, leaks = False, []
    while process.poll() is None:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                words = cmdline.read_bytes().decode(errors="replace")
            except OSError:
                continue  # the process ended meanwhile
            seen_django_side = seen_django_side or "oauthops_django_side" in words
            leaks += secrets_in(words, [canary_token, env_secret])
        time.sleep(0.05)
    output = process.stdout.read() + process.stderr.read()
    assert process.returncode == 0, output
    assert seen_django_side, "the Django side ran too briefly to be seen"
    assert leaks == []


# What is masked does not depend on the database.
@pytest.mark.one_backend
def test_masking_never_changes_a_result_and_secrets_reach_neither_output_nor_syslog(playbook):
    """Secret-named plain values (TOKEN_LIMIT=1, DJANGO_SECRET_KEY=true, ...) leave every count, boolean and
    message as it is without them; DB_PASS, MYSQL_PWD and a URL's ?password= appear neither at -vvv nor in
    the target's syslog."""
    check_masking(playbook)
