"""Smoke runs of the bench/ scripts at toy sizes: they must keep working as the code changes.

(The figures themselves are measured by running the scripts, never asserted here.)
"""

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TEST_KEY

pytestmark = pytest.mark.e2e  # each script runs as its own process, as a user runs it

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run(env, *args, timeout=120):
    return subprocess.run([sys.executable, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_throttle_worker_sends_through_the_api_client(env, sandbox):
    proc = run(env, BENCH / "throttle.py", "--worker", "--url", sandbox.base_url, "--key",
               TEST_KEY, "--count", "3", "--threads", "2", "--limit", "100", "--window", "1")
    assert proc.returncode == 0, proc.stderr
    assert sandbox.statuses() == [201, 201, 201]


def test_saves_bench_prints_its_table(env):
    proc = run(env, BENCH / "saves.py", "--events", "16")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    from cloudchat_cli.services.webhooks.store import SyncFs

    ways = 3 if SyncFs.available() else 2  # fsync each without/with hint (, one syncfs)
    assert len(rows) == 1 + 1 + 4 * ways  # header, thread per event, 4 batch sizes × ways


def test_listener_bench_measures(env):
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import listener; "
            "rows = listener.measure(20, 2); "
            "print([(r['senders'], r['mode'], r['deliveries'], r['ok']) for r in rows])")
    proc = run(env, "-c", code, BENCH)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("[(1, 'per delivery', 200, 200), (2, 'per delivery', 20, 20), "
                                   "(2, 'keep-alive', 20, 20)]")


def test_throttle_worker_through_redis(env, sandbox, redis_server):
    proc = run(env, BENCH / "throttle.py", "--worker", "--url", sandbox.base_url, "--key",
               TEST_KEY, "--count", "3", "--threads", "2", "--limit", "100", "--window", "1",
               "--store", redis_server.url)
    assert proc.returncode == 0, proc.stderr
    assert sandbox.statuses() == [201, 201, 201]
    assert [k for k in redis_server.client().keys("*") if k.startswith("cloudchat:{")]


def test_throttle_overhead_measures_both_stores(env, redis_server):
    code = ("import sys, pathlib, tempfile; sys.path.insert(0, sys.argv[1]); import throttle; "
            "t = pathlib.Path(tempfile.mkdtemp()); "
            "print([throttle.overhead(s, t, 5)['count'] for s in ('local', sys.argv[2])])")
    proc = run(env, "-c", code, BENCH, redis_server.url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[5, 5]"


def test_history_bench_measures_ingest_and_lookup(env):
    proc = run(env, BENCH / "history.py", "--rows", "1000")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 3 and rows[2].endswith("| 500 |")  # half were sent before


def test_forward_outage_bench_measures(env):
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import forward_outage as f; "
            "r = f.measure(12, 0.5, delays='0.1', max_delay='0.2', timeout=60); "
            "print([r[k] for k in ('acknowledged_200', 'delivered', 'duplicates', "
            "'order_kept', 'invalid_signatures')])")
    proc = run(env, "-c", code, BENCH)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[12, 12, 0, True, 0]"


def test_track_bench_measures_and_checks_its_counts(env):
    proc = run(env, BENCH / "track.py", "--rows", "300")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 300 |")]
    assert [r.split("|")[2].strip() for r in rows] == [
        "first: 900 new files", "again: nothing new", "incremental: 3 new files"]


def test_pacing_bench_measures_rate_and_gaps(env):
    proc = run(env, BENCH / "pacing.py", "--rows", "5", "--limit", "20", "--window", "1",
               "--rate", "2/s", timeout=180)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 3 and all(line.rstrip().endswith("| 0 |") for line in rows[1:])


def test_xlsx_bench_preflights_each_format(env, tmp_path):
    proc = run(env, BENCH / "xlsx.py", "--rows", "50", "--dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("|")[1:4] for line in proc.stdout.splitlines()[2:]]
    assert [(i.strip(), s.strip()) for i, _mb, s in rows] == [
        (name, step) for name in ("csv", "xlsx (inline)", "xlsx (shared)")
        for step in ("preflight", "report .xlsx")]
