"""Playbooks from the installed tarball over real SSH (how the host is made: sshhosts.py).

The modules run as the application's user (become_user), in both ways Ansible allows that; what
happens with neither; the roles run as root (become) on a cluster of three hosts that share one
database, and the installed cron line runs as cron runs it.
"""

import json
import os
import re
import secrets
import shutil
from pathlib import Path

import pytest

from cronjobs import (
    COUNT_ROWS,
    DELETED_BY_ENGINE,
    KEPT_ROWS,
    SEEDED_ROWS,
    changed_per_host,
    finish,
    log_entries,
    read_cron_file,
    start_as_cron,
)
from sshhosts import APP_USER, HOSTS, PLAYBOOKS, SETTINGS, database_env

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason=(
    "they create system users and a sudo rule, start sshd and write under /srv, which only "
    "root may; run them as root, as CI does (the summary then says NOT RUN loudly)"
))

BECOME_ERROR = (
    "Failed to set permissions on the temporary files Ansible needs to create when becoming an unprivileged user"
)


def module_vars(app_site, env_files, database, host="web1"):
    return {
        "app_user": APP_USER,
        "project_path": str(app_site.project(host)),
        "virtualenv": str(app_site.venv),
        "env_file": env_files[host],
        "database": str(database),
    }


def owners(directory):
    return {path.name: path.owner() for path in Path(directory).iterdir()}


# -- the modules, as the application user --------------------------------------------------------


@pytest.mark.parametrize("way", ["pipelining", "acl"])
def test_the_modules_run_as_the_application_user(way, ansible, app_site, database, env_files):
    inventory = ansible.inventory({"app": {"web1": {}}})
    output = ansible.playbook(
        PLAYBOOKS / "modules.yml", inventory, "-vvv",
        pipelining=way == "pipelining", extra_vars=dict(module_vars(app_site, env_files, database), prefix=way),
    )
    # -vvv shows how each module reached the application user: on stdin of sudo (pipelining), or as
    # a file in the deploy user's temporary directory that setfacl lets the application user read.
    granted = "setfacl -m u:%s:r-x" % APP_USER
    if way == "pipelining":
        assert granted not in output and " PUT " not in output
    else:
        assert granted in output and " PUT " in output
    assert set(owners(database.parent).values()) == {APP_USER}, "the database's directory holds another user's file"


PROBES = {
    # way: (sshd port, pipelining, become_user, module's outcome, file transfer's outcome); "refused" is
    # Ansible's BECOME_ERROR
    "acl": ("port", False, APP_USER, "ok", "ok"),
    "pipelining-without-acl": ("noacl_port", True, APP_USER, "ok", "refused"),
    "neither": ("noacl_port", False, APP_USER, "refused", "refused"),
    "become-root-with-neither": ("noacl_port", False, "root", "ok", "ok"),
}


@pytest.mark.parametrize("way", list(PROBES))
def test_what_a_become_user_needs(way, ansible, app_site, database, env_files):
    """Pipelining carries modules to a become_user without acl, but not files (copy, template);
    without either, Ansible refuses. Becoming root needs neither. (The second port's PATH has no setfacl.)"""
    port, pipelining, user, module_outcome, copy_outcome = PROBES[way]
    inventory = ansible.inventory({"app": {"web1": {}}}, port=getattr(ansible.sshd, port))
    copied = database.parent / "copied.txt"
    output = ansible.playbook(
        PLAYBOOKS / "become_probe.yml", inventory, pipelining=pipelining,
        extra_vars=dict(module_vars(app_site, env_files, database), probe_user=user, copy_dest=str(copied)),
    )
    (report,) = re.findall(r'"msg": "PROBE (.*)"$', output, re.MULTILINE)
    messages = json.loads(json.loads('"%s"' % report))
    outcome = {what: "refused" if BECOME_ERROR in msg else msg for what, msg in messages.items()}
    assert outcome == {"module": module_outcome, "copy": copy_outcome}, messages
    if copy_outcome == "ok":
        assert copied.owner() == user


# -- the roles, as root, on three hosts that share one database ----------------------------------


@pytest.fixture
def jobs(session_root):
    """A cron job name per host, unique to this run, and the stand-ins for /etc/cron.d, /var/lib and /var/log
    its files go to (root's, like those): a cron daemon running on this machine never sees them."""
    run = secrets.token_hex(4)
    base = session_root / ("jobs-" + run)
    for directory in (base, base / "cron.d", base / "lib", base / "log"):
        directory.mkdir(mode=0o755)
    yield {host: "oauthops-hosts-%s-%s" % (run, host) for host in HOSTS}, base
    shutil.rmtree(base)


def job_files(names, base, host):
    """The cron file, the job's directory and its log (the role's token_cleanup_cron_file, _directory, _log_file)."""
    name = names[host]
    return base / "cron.d" / name, base / "lib" / name, base / "log" / (name + ".log")


def installed_jobs(names, base):
    return sorted(host for host in names if any(path.exists() for path in job_files(names, base, host)))


def token_rows(app_site, database):
    return json.loads(app_site.manage("web2", database, "shell", "--no-imports", "-c", COUNT_ROWS))


def test_only_the_chosen_host_of_a_cluster_gets_the_job(ansible, app_site, database, env_files, jobs):
    job_names, base = jobs
    hosts = {
        host: {
            "token_cleanup_name": job_names[host],
            "token_cleanup_cron_file": str(job_files(job_names, base, host)[0]),
            "token_cleanup_directory": str(job_files(job_names, base, host)[1]),
            "token_cleanup_log_file": str(job_files(job_names, base, host)[2]),
            # Stand-ins that do not exist: no logrotate configuration, no systemd unit on the machine.
            "token_cleanup_logrotate_directory": str(base / "logrotate.d"),
            "token_cleanup_systemd_unit_directory": str(base / "systemd"),
            "token_cleanup_user": APP_USER,
            "token_cleanup_project_path": str(app_site.project(host)),
            "token_cleanup_virtualenv": str(app_site.venv),
            "token_cleanup_settings": SETTINGS,
            "token_cleanup_env_file": env_files[host],
            # February 31st: no cron daemon would ever start the job by itself.
            "token_cleanup_day": "31",
            "token_cleanup_month": "2",
        }
        for host in HOSTS
    }
    inventory = ansible.inventory({"oauthops_token_cleanup": hosts})
    shipped = "oauthops.toolkit.token_cleanup"  # the installed collection's playbook: become: true

    output = ansible.playbook(shipped, inventory, pipelining=False, extra_vars={"token_cleanup_host": "web2"})
    changed = changed_per_host(output)
    assert changed["web2"] > 0 and changed["web1"] == changed["web3"] == 0
    assert installed_jobs(job_names, base) == ["web2"]

    cron_file, _directory, log_file = job_files(job_names, base, "web2")
    assert (cron_file.owner(), cron_file.stat().st_mode & 0o777) == ("root", 0o644)
    environment, (job,) = read_cron_file(cron_file)
    assert (job.user, job.schedule) == (APP_USER, "17 * 31 2 *")
    assert str(app_site.venv / "bin" / "python") in job.command

    app_site.manage("web2", database, "oauthops_seed_tokens", "cluster")
    assert token_rows(app_site, database) == SEEDED_ROWS
    assert finish(start_as_cron(job, environment)) == (0, "", ""), "a healthy run prints nothing"
    ((_timestamp, fields),) = log_entries(log_file)
    assert {name: fields[name] for name in DELETED_BY_ENGINE["oauthops"]} == DELETED_BY_ENGINE["oauthops"]
    assert (fields["engine"], fields["total"], fields["complete"]) == ("oauthops", 18, True)
    assert token_rows(app_site, database) == KEPT_ROWS

    output = ansible.playbook(shipped, inventory, pipelining=False,
                              extra_vars={"token_cleanup_host": "web2", "token_cleanup_state": "absent"})
    assert changed_per_host(output)["web2"] > 0
    assert installed_jobs(job_names, base) == []


def test_the_applications_role_converges_as_the_application_user(ansible, app_site, database):
    secret = "Vau1ted-" + secrets.token_hex(8)
    host = {
        # The shipped playbook has no become: the inventory makes its modules the application user's.
        "ansible_become": True,
        "ansible_become_user": APP_USER,
        "applications_project_path": str(app_site.project("web1")),
        "applications_virtualenv": str(app_site.venv),
        "applications_settings": SETTINGS,
        "applications_environment": database_env(database),
        "applications_list": [
            {"client_id": "hosts-web", "name": "Web", "client_type": "confidential",
             "authorization_grant_type": "authorization-code", "redirect_uris": ["https://web.example.com/cb"],
             "client_secret": secret},
            {"client_id": "hosts-worker", "client_type": "confidential",
             "authorization_grant_type": "client-credentials"},
        ],
    }
    inventory = ansible.inventory({"oauthops_applications": {"web1": host}})
    first = ansible.playbook("oauthops.toolkit.applications", inventory, pipelining=True)
    second = ansible.playbook("oauthops.toolkit.applications", inventory, pipelining=True)
    assert "hosts-web: created" in first and "hosts-worker: created" in first
    assert "hosts-web: unchanged" in second and "hosts-worker: unchanged" in second
    assert secret not in first + second
    assert set(owners(database.parent).values()) == {APP_USER}
