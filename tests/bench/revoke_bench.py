"""Benchmark: oauth_token_revoke's engine against raw set-based SQL, revoking every token of one application.

The data is cleanup_bench.py's, seeded with set-based SQL ("revoke-N": N access tokens of one application, a
quarter expired, half of the live ones with a live refresh token, a fifth of the expired ones with a revoked
refresh token, a TokenAudit row (CASCADE) per expired access token, a TokenSession (SET_NULL) per tenth, N/25 ID
tokens and N/25 grants), on identical copies of one database (cleanup_bench.Copies). Contestants, each in its
own process:

  engine   the module's engine in-process (run_token_revoke, client_id of the application, batch size 10000):
           keyset batches, each in its own transaction, with DOT's revoke() semantics
  raw      the physical limit: one statement per table and relation, in one transaction, no batching

Both must leave the same rows (cleanup_bench.fingerprint), or the run fails. Each round runs both, on fresh copies,
the first of them in turns (the machine is shared and noisy: one sample each would decide nothing); it prints the
median of each and their ratio (the target: the engine within 1.5x of raw) and the load average before the run.

Two times per run. "committed": from the first statement to the commit of the last, what a caller waits for. Then
"settled" adds what the server still had to do for that work once it was committed (cleanup_bench.Copies.settle:
MariaDB's purge of the deleted rows and its dirty pages written; PostgreSQL's CHECKPOINT; nothing on SQLite). The
two differ where batching moves work: raw's single transaction leaves all of InnoDB's purge until after its commit,
while each of the engine's short transactions is purged while the next runs, inside the engine's committed time.

Usage: python tests/bench/revoke_bench.py [--backends sqlite,postgresql,mysql] [--tokens 1000000]
           [--batch-size 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cleanup_bench

CONTESTANTS = ("engine", "raw")


# --- Child side: runs inside the contestant's process, with Django set up for one database.


def raw_revoke() -> None:
    """What revoking every token of the application leaves, in one statement per table and relation: the live
    refresh tokens marked revoked and unbound, every access token (its audit rows deleted, its sessions set
    null, the revoked refresh tokens it was bound to unbound), ID token and grant deleted. Subqueries only ever
    read another table than the one written, which MySQL requires."""
    from django.db import connection, transaction
    from django.utils import timezone

    tables = dict((name, connection.ops.quote_name(model._meta.db_table)) for name, model in cleanup_bench._tables().items())
    application = "(SELECT id FROM %s WHERE client_id = 'bench')" % connection.ops.quote_name(
        cleanup_bench._tables()["access"]._meta.get_field("application").related_model._meta.db_table
    )
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    tokens = "SELECT id FROM {access} WHERE application_id = %s" % application
    statements = [  # (SQL, parameters)
        ("UPDATE {refresh} SET revoked = %s, updated = %s, access_token_id = NULL "
         "WHERE application_id = " + application + " AND revoked IS NULL", [now, now]),
        ("UPDATE {refresh} SET access_token_id = NULL WHERE access_token_id IN (%s)" % tokens, []),
        ("DELETE FROM {audit} WHERE access_token_id IN (%s)" % tokens, []),
        ("UPDATE {session} SET access_token_id = NULL WHERE access_token_id IN (%s)" % tokens, []),
        ("DELETE FROM {access} WHERE application_id = " + application, []),
        ("DELETE FROM {id} WHERE application_id = " + application, []),
        ("DELETE FROM {grant} WHERE application_id = " + application, []),
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql.format(**tables), params)


def child(role: str, argument: str) -> None:
    cleanup_bench._django()
    output = {}
    started = time.perf_counter()
    if role == "fingerprint":
        output = cleanup_bench.fingerprint()
        # The moment of revocation differs between contestants; how many rows carry one does not.
        from oauth2_provider.models import get_refresh_token_model

        output["revoked"] = get_refresh_token_model().objects.filter(revoked__isnull=False).count()
    elif role == "engine":
        from oauthops_django_side._django_core import Context
        from oauthops_django_side._django_revoke import run_token_revoke

        output = run_token_revoke({"client_id": "bench", "batch_size": int(argument)}, Context("default", False))
    elif role == "raw":
        raw_revoke()
    output["seconds"] = time.perf_counter() - started
    output["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(output, default=str))


# --- Parent side.


def state(env: dict) -> dict:
    found = cleanup_bench.run_child(env, "fingerprint", script=Path(__file__).resolve())
    del found["seconds"], found["maxrss_kb"]
    return found


def median(values: list) -> float:
    return sorted(values)[(len(values) - 1) // 2]


def bench(backend: str, tokens: int, batch_size: int, workdir: Path, repeat: int) -> dict:
    copies = cleanup_bench.Copies(backend, workdir, cleanup_bench.REVOKE_SCENARIO + str(tokens))
    runs = {name: [] for name in CONTESTANTS}
    try:
        for repetition in range(repeat):
            first = repetition % len(CONTESTANTS)  # each round starts with another contestant
            ends = {}
            for contestant in CONTESTANTS[first:] + CONTESTANTS[:first]:
                env = copies.copy(contestant)
                try:
                    run = cleanup_bench.run_child(env, contestant, str(batch_size), script=Path(__file__).resolve())
                    started = time.perf_counter()
                    copies.settle()
                    run["settled"] = run["seconds"] + time.perf_counter() - started
                    runs[contestant].append(run)
                    print(
                        "bench:   round %d: %s %.2f s committed, %.2f s settled"
                        % (repetition + 1, contestant, run["seconds"], run["settled"]),
                        file=sys.stderr,
                        flush=True,
                    )
                    ends[contestant] = state(env)
                finally:
                    copies.release(env)
            if ends["engine"] != ends["raw"]:
                raise SystemExit("bench: end states differ on %s: %s" % (backend, json.dumps(ends)))
    finally:
        copies.close()
    return {"backend": backend, "runs": runs, "revoked": runs["engine"][0]["total"]}


TARGET = 1.5


def print_table(rows: list, tokens: int, batch_size: int, repeat: int) -> None:
    print(
        "Revoking every token of one application (%d access tokens), batch size %d; median of %d round(s) in seconds,"
        " peak RSS in MB" % (tokens, batch_size, repeat)
    )
    header = "%-10s %8s | %8s %8s %7s | %8s %8s %7s | %7s %7s | %s" % (
        "backend", "revoked", "engine", "raw", "eng/raw", "engine", "raw", "eng/raw", "RSS eng", "RSS raw",
        "eng/raw committed, each round",
    )
    print("%-19s | %-25s | %-25s |" % ("", "committed", "settled"))
    print(header)
    print("-" * len(header))
    verdicts = []
    for row in rows:
        engine, raw = row["runs"]["engine"], row["runs"]["raw"]
        committed = median([run["seconds"] for run in engine]), median([run["seconds"] for run in raw])
        settled = median([run["settled"] for run in engine]), median([run["settled"] for run in raw])
        rounds = ", ".join("%.2fx" % (e["seconds"] / r["seconds"]) for e, r in zip(engine, raw))
        print("%-10s %8d | %8.2f %8.2f %6.2fx | %8.2f %8.2f %6.2fx | %7.0f %7.0f | %s" % (
            row["backend"], row["revoked"], committed[0], committed[1], committed[0] / committed[1],
            settled[0], settled[1], settled[0] / settled[1],
            max(run["maxrss_kb"] for run in engine) / 1024, max(run["maxrss_kb"] for run in raw) / 1024, rounds))
        ratio = committed[0] / committed[1]
        verdicts.append("%s %.2fx %s" % (row["backend"], ratio, "PASS" if ratio <= TARGET else "FAIL"))
    if verdicts:
        print("target engine <= %.1fx raw, committed: %s" % (TARGET, ", ".join(verdicts)))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--backends", default="sqlite,postgresql,mysql")
    parser.add_argument("--tokens", type=int, default=1_000_000, help="access tokens of the application")
    parser.add_argument("--batch-size", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds: each contestant once a round, on a fresh copy")
    options = parser.parse_args()
    import django
    import oauth2_provider

    load = os.getloadavg()
    print(
        "Python %s, Django %s, django-oauth-toolkit %s, %d CPUs, load average %.2f %.2f %.2f"
        % (sys.version.split()[0], django.get_version(), oauth2_provider.__version__, os.cpu_count(), *load)
    )
    workdir = Path(tempfile.mkdtemp(prefix="oauthops-revoke-bench-"))
    os.environ["OAUTHOPS_BENCH_SIDE"] = str(cleanup_bench.ship_side_package(workdir))
    rows, skipped = [], []
    started = time.monotonic()
    try:
        for backend in options.backends.split(","):
            print("bench: %s, %d access tokens ..." % (backend, options.tokens), file=sys.stderr, flush=True)
            try:
                rows.append(bench(backend, options.tokens, options.batch_size, workdir, options.repeat))
            except Exception as exc:  # an unreachable server: say so, and go on with the others
                if type(exc).__name__ != "Unavailable":
                    raise
                skipped.append("%s: %s" % (backend, exc))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print_table(rows, options.tokens, options.batch_size, options.repeat)
    for line in skipped:
        print("NOT MEASURED: %s" % line)
    print("%.0f s wall, load average at the end %.2f %.2f %.2f" % (time.monotonic() - started, *os.getloadavg()))


if __name__ == "__main__":
    main()
