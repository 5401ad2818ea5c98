# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client secrets verified and hashed several at once: the CPU-bound part of converging applications.

A stored secret is a salted hash, so a declared secret is verified with the hasher (PBKDF2 with
Django's iterations, a few tenths of a second each), never compared with a faster digest. The
verifications of a set are independent, and Django's stock hashers spend their time in C code
that releases the GIL (hashlib's pbkdf2_hmac, argon2-cffi, bcrypt), so a pool of threads verifies
as many at once as the host has cores.

Only the pure hashing runs in the pool. Django's database connections are per thread: a query
from a worker would open a connection of its own, outside the caller's transaction, so every
query and write stays on the caller's thread.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from ._django_core import OperationError


class Verdict:
    """What verifying a declared secret against a stored hash found: whether it matches, and whether
    the hash is outdated (made by another hasher, or with other iterations, than the project's
    client secret hasher would use now), which Django answers by hashing the secret again."""

    def __init__(self, matches: bool, outdated: bool) -> None:
        self.matches = matches
        self.outdated = outdated


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity, not the host's count, where Python knows it)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def thread_count(requested) -> int:
    """The pool's size: hash_threads, or the CPUs this process may use."""
    if requested is None:
        return available_cpus()
    if requested < 1:
        raise OperationError(
            "invalid",
            "hash_threads must be 1 or more, not %d (1 verifies one secret at a time; leave it out to use every CPU "
            "of the host)" % requested,
            {"hash_threads": ["must be 1 or more"]},
        )
    return requested


def verify_all(pairs: list, threads: int) -> list:
    """A Verdict for each (declared, stored hash) pair, as Django's check_password finds it: the setter it
    calls for a matching secret whose hash it would renew says that the hash is outdated."""
    from django.contrib.auth.hashers import check_password

    preferred = client_secret_hasher()

    def verify(pair):
        renewals = []
        matches = check_password(pair[0], pair[1], setter=renewals.append, preferred=preferred)
        return Verdict(matches, bool(renewals))

    return _run_all(verify, pairs, threads)


def hash_all(secrets: list, threads: int) -> list:
    """Each secret hashed as DOT's ClientSecretField hashes a plain one when it saves it."""
    from django.contrib.auth.hashers import make_password

    hasher = client_secret_hasher()
    return _run_all(lambda secret: make_password(secret, hasher=hasher), secrets, threads)


def client_secret_hasher() -> str:
    """The hasher DOT hashes client secrets with: its CLIENT_SECRET_HASHER setting (DOT 3 and later),
    else Django's default, the first of PASSWORD_HASHERS."""
    from oauth2_provider.settings import oauth2_settings

    try:
        return oauth2_settings.CLIENT_SECRET_HASHER
    except AttributeError:  # an older DOT, which hashes with make_password()'s default
        return "default"


def _run_all(function, arguments: list, threads: int) -> list:
    """[function(argument) for argument in arguments], at most `threads` at once, in order. With one
    thread or one argument, on the calling thread. The first exception, in argument order, is raised."""
    if threads <= 1 or len(arguments) <= 1:
        return [function(argument) for argument in arguments]
    from django.contrib.auth.hashers import get_hashers, get_hashers_by_algorithm

    # The hashers are imported and cached here, before the workers look them up at once.
    get_hashers()
    get_hashers_by_algorithm()
    with ThreadPoolExecutor(max_workers=min(threads, len(arguments))) as pool:
        return list(pool.map(function, arguments))
