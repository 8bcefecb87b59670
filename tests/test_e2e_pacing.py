"""End to end: a broadcast's share, spacing, quiet hours and later start, seen at the sandbox.

Real `cloudchat` processes against a real sandbox with small windows. Times are only ever
lower bounds (spacing) or orders in the sandbox's record; waits end on what the CLI prints.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from .conftest import TEST_KEY, run_cli
from .test_e2e_interrupt import interrupt, start, wait_for

# Loopback delivery can reorder a request's arrival against its send by a few ms; the
# spacing is checked at the server with this much slack (far below any spacing used).
JITTER = 0.05


def csv_file(tmp_path, n: int):
    path = tmp_path / "customers.csv"
    rows = "".join(f"+62812345{i:03d}7,c{i}\n" for i in range(n))
    path.write_text("to,name\n" + rows, encoding="utf-8")
    return path


def limit_env(env, box, limit, window, **extra):
    return {**env, "CLOUDCHAT_BASE_URL": box.base_url, "CLOUDCHAT_API_KEY": TEST_KEY,
            "CLOUDCHAT_RATE_LIMIT": str(limit), "CLOUDCHAT_RATE_WINDOW": str(window),
            "CLOUDCHAT_RATE_MARGIN": "0.05", "TZ": "UTC", **extra}


def broadcast_times(box) -> list[float]:
    return sorted(r["ts"] for r in box.records()
                  if r["status"] == 201 and r["request"]["text"].startswith("Hi "))


def hhmm(moment: datetime) -> str:
    return f"{moment:%H:%M}"


# --- spacing and share ---------------------------------------------------------------------------


def test_paced_broadcast_keeps_its_spacing_at_the_server(env, tmp_path, sandbox_factory):
    box = sandbox_factory("--rate-limit", "10", "--rate-window", "2", "-q")
    cenv = limit_env(env, box, 10, 2)
    now = datetime.now(UTC)
    between = f"{hhmm(now - timedelta(hours=1))}-{hhmm(now + timedelta(hours=1))}"
    proc = run_cli("broadcast", str(csv_file(tmp_path, 8)), "-t", "Hi {name}", "--yes",
                   "--rate", "2/s", "--between", between, "--tz", "UTC", "--log-every", "2",
                   env=cenv)
    assert proc.returncode == 0, proc.stderr
    # 2/s on a 2 s window: a share of 4 per window, one request every 0.5 s.
    assert "ETA: 8 message(s) at 117/min (one every 0.5 s) between" in proc.stderr
    times = broadcast_times(box)
    assert len(times) == 8 and 429 not in box.statuses()
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.5 - JITTER, gaps
    # Without a TTY, the periodic lines carry the sustained rate and the schedule's ETA.
    logged = [line for line in proc.stderr.splitlines() if "remaining" in line]
    assert logged and all("117/min, ETA " in line for line in logged), logged


def test_burst_spacing_is_only_on_request(env, tmp_path, sandbox_factory):
    box = sandbox_factory("--rate-limit", "10", "--rate-window", "2", "-q")
    cenv = limit_env(env, box, 10, 2)
    proc = run_cli("broadcast", str(csv_file(tmp_path, 6)), "-t", "Hi {name}", "--yes",
                   "--rate", "2/s", "--spacing", "burst", "-q", env=cenv)
    assert proc.returncode == 0, proc.stderr
    times = broadcast_times(box)
    # Its share (4 per 2 s) still holds: the 5th waits for the first slot to come free.
    assert times[4] - times[0] >= 2.0 and 429 not in box.statuses()


@pytest.mark.e2e
@pytest.mark.parametrize("spacing", ["10", "burst"])
def test_a_send_is_served_without_waiting_for_the_broadcasts_backlog(
        env, tmp_path, sandbox_factory, spacing):
    """The broadcast may use 2 of the App's 6 per 6 s; a `cloudchat send` started while the
    broadcast waits (for its spacing, or for its spent share) goes out before the broadcast's
    next request."""
    box = sandbox_factory("--rate-limit", "6", "--rate-window", "6")
    cenv = limit_env(env, box, 6, 6)
    bc = start(cenv, "broadcast", str(csv_file(tmp_path, 6)), "-t", "Hi {name}", "--yes",
               "--rate", "20/min", "--spacing", spacing, "--log-every", "1")
    try:
        waited = 2 if spacing == "burst" else 1  # the share, or the first spaced request
        for _ in range(waited):
            wait_for(bc, "sent,")
        sent = run_cli("send", "6281299999999", "order #1 confirmed", env=cenv)
        assert sent.returncode == 0, sent.stderr
        assert "rate limit" not in sent.stderr.lower()
    finally:
        code, rest = interrupt(bc)
    assert code == 130, rest
    records = [r for r in box.records() if r["status"] == 201]
    order = [r["request"]["text"][:2] for r in records]
    assert order[:waited + 1] == ["Hi"] * waited + ["or"], order
    assert 429 not in box.statuses()


def test_rate_above_the_apps_limit_is_refused(env, tmp_path, sandbox_factory, cli):
    box = sandbox_factory("-q")
    cenv = limit_env(env, box, 60, 60)
    proc = run_cli("broadcast", str(csv_file(tmp_path, 2)), "-t", "Hi", "--yes",
                   "--rate", "2/s", env=cenv)
    assert proc.returncode == 2
    assert "--rate 2/s is above the App's limit of 60 per 60 s" in proc.stderr
    assert box.records() == []
    for bad, needle in (("--rate=fast", "--rate must be like 40/min"),
                        ("--spacing=soon", "--spacing: expected auto, burst or seconds"),
                        ("--between=8-20", "--between: expected HH:MM-HH:MM"),
                        ("--tz=Mars/Olympus", "unknown time zone 'Mars/Olympus'")):
        proc = run_cli("broadcast", str(csv_file(tmp_path, 2)), "-t", "Hi", "--yes", bad,
                       env=cenv)
        assert (proc.returncode, needle in proc.stderr) == (2, True), (bad, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_broadcast_rate_setting_is_shown_with_its_source_and_used(env, tmp_path, cli):
    assert cli("config", "set", "broadcast_rate", "30/min").returncode == 0
    shown = json.loads(cli("config", "show", "--json", CLOUDCHAT_API_KEY=TEST_KEY).stdout)
    assert shown["broadcast_rate"]["value"] == "30/min"
    assert shown["broadcast_rate"]["source"].startswith("profile")
    assert cli("config", "set", "broadcast_rate", "lots").returncode == 2
    path = csv_file(tmp_path, 3)
    plan = cli("--sandbox", "broadcast", str(path), "-t", "Hi", "--dry-run", "--json")
    schedule = json.loads(plan.stdout)["schedule"]
    assert (schedule["rate"], schedule["share"]["requests"]) == ("30/min", 30)
    over = cli("--sandbox", "broadcast", str(path), "-t", "Hi", "--dry-run",
               CLOUDCHAT_BROADCAST_RATE="2/s")
    assert over.returncode == 2
    assert "broadcast_rate 2/s (from env (CLOUDCHAT_BROADCAST_RATE)) is above" in over.stderr


# --- hours and a later start ----------------------------------------------------------------------


@pytest.mark.e2e
def test_outside_quiet_hours_it_pauses_and_ctrl_c_is_a_resumable_interruption(
        env, tmp_path, sandbox_factory):
    box = sandbox_factory("-q")
    cenv = limit_env(env, box, 60, 60)
    now = datetime.now(UTC)
    opens = now + timedelta(hours=2)
    between = f"{hhmm(opens)}-{hhmm(opens + timedelta(hours=1))}"
    proc = start(cenv, "broadcast", str(csv_file(tmp_path, 3)), "-t", "Hi {name}", "--yes",
                 "--between", between, "--tz", "UTC")
    seen = wait_for(proc, "paused until")
    assert f"paused until {hhmm(opens)} UTC" in seen[-1]
    assert any(f"between {between.replace('-', '–')} UTC: done" in line for line in seen)
    code, rest = interrupt(proc)
    assert code == 130, rest
    assert "resume with: cloudchat broadcast" in rest and "0 sent" in rest
    assert box.records() == []  # nothing went out at night


@pytest.mark.e2e
def test_at_prints_the_plan_at_once_then_waits(env, tmp_path, sandbox_factory):
    box = sandbox_factory("-q")
    cenv = limit_env(env, box, 60, 60)
    later = datetime.now(UTC) + timedelta(days=1)
    at = f"{later:%Y-%m-%d %H:%M}"
    proc = start(cenv, "broadcast", str(csv_file(tmp_path, 3)), "-t", "Hi {name}", "--yes",
                 "--at", at, "--tz", "UTC")
    seen = wait_for(proc, "paused until")
    assert any(f"starting {later:%a %H:%M} UTC: done" in line for line in seen), seen
    code, rest = interrupt(proc)
    assert code == 130 and box.records() == []
    # The resume command drops --at: resuming starts at once (a passed --at is refused).
    resume = next(line for line in rest.splitlines() if "resume with:" in line)
    assert "--at" not in resume and "--tz UTC" in resume


def test_at_in_the_past_is_refused_before_anything_is_written(env, tmp_path, cli):
    state = tmp_path / "state"
    before = sorted(state.rglob("*")) if state.exists() else []
    for extra in ([], ["--dry-run"]):
        proc = cli("--sandbox", "broadcast", str(csv_file(tmp_path, 2)), "-t", "Hi", "--yes",
                   "--at", "2020-01-01 08:00", "--tz", "Asia/Jakarta", *extra)
        assert proc.returncode == 2
        assert "--at 2020-01-01 08:00 (WIB) is in the past" in proc.stderr
    assert (sorted(state.rglob("*")) if state.exists() else []) == before


def test_dry_run_json_plan_carries_the_schedule(env, tmp_path, cli):
    proc = cli("--sandbox", "broadcast", str(csv_file(tmp_path, 5)), "-t", "Hi", "--dry-run",
               "--json", "--rate", "40/min", "--between", "08:00-20:00", "--tz",
               "Asia/Jakarta", "--at", "2030-01-07 19:59")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    s = plan["schedule"]
    assert s["between"] == "08:00–20:00 WIB" and s["tz"] == "Asia/Jakarta"
    assert s["spacing"] == {"mode": "auto", "seconds": 1.5}
    # 19:59 leaves one minute: 40 fit, so 5 finish at 19:59:06; the ETA counts from now.
    assert s["start_at"] == "2030-01-07T19:59:00+07:00"
    assert s["done_at"] == "2030-01-07T19:59:06+07:00"
    assert plan["eta_seconds"] == s["eta_seconds"] > 86400
    assert s["summary"].startswith("5 message(s) at 40/min (one every 1.5 s) between")


@pytest.mark.e2e
def test_a_later_start_goes_on_by_itself(env, tmp_path, sandbox_factory):
    box = sandbox_factory("-q")
    cenv = limit_env(env, box, 60, 60)
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)
    proc = start(cenv, "broadcast", str(csv_file(tmp_path, 2)), "-t", "Hi {name}", "--yes",
                 "--at", f"{at:%Y-%m-%d %H:%M:%S}", "--tz", "UTC", "--spacing", "burst")
    seen = wait_for(proc, "paused until")  # the plan is printed at once, then it waits
    assert any("starting " in line for line in seen)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 0, "".join(seen) + rest
    times = broadcast_times(box)
    assert len(times) == 2 and times[0] >= at.timestamp()
