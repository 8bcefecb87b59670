"""Broadcast etiquette without processes: rates, spacing, quiet hours, --at, the schedule's ETA.

Every time is an explicit timestamp (the injectable clock); zones are IANA zones via zoneinfo.
"""

from __future__ import annotations

import math
from datetime import datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from cloudchat_cli.core import rate as rates
from cloudchat_cli.core.durations import fmt_duration
from cloudchat_cli.core.errors import ExitCode, UsageError
from cloudchat_cli.core.settings import Resolved
from cloudchat_cli.core.throttle import MemoryStore, Throttle
from cloudchat_cli.services.broadcast import pacing, schedule
from cloudchat_cli.services.broadcast.schedule import QuietHours

from .fakes import FakeClock

JAKARTA = ZoneInfo("Asia/Jakarta")  # UTC+7 all year: no daylight saving
BERLIN = ZoneInfo("Europe/Berlin")


def ts(text: str, tz=JAKARTA) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def cfg(limit=60, window=60.0, margin=0.25, broadcast_rate=""):
    items = {"broadcast_rate": Resolved("broadcast_rate", broadcast_rate, "profile",
                                        "shop in config.toml")}
    return SimpleNamespace(rate_limit=limit, rate_window=window, rate_margin=margin,
                           broadcast_rate=broadcast_rate, source=items.__getitem__)


# --- rates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, per_second, shown", [
    ("40/min", 40 / 60, "40/min"), ("2/s", 2.0, "2/s"), ("500/h", 500 / 3600, "500/h"),
    (" 1.5 / MIN ", 1.5 / 60, "1.5/min"), ("30/hour", 30 / 3600, "30/h"),
])
def test_rates_parse(text, per_second, shown):
    assert rates.parse_rate(text) == (pytest.approx(per_second), shown)


@pytest.mark.parametrize("text", ["40", "40/day", "-1/min", "0/min", "/min", "1e3/min", "abc",
                                  "40/min; rm -rf"])
def test_bad_rates_refused(text):
    with pytest.raises(ValueError):
        rates.parse_rate(text)


def test_rate_above_the_apps_limit_is_refused_with_exit_2():
    with pytest.raises(UsageError) as info:
        pacing.resolve_pacing("61/min", None, cfg())
    assert info.value.exit_code == ExitCode.USAGE
    assert "--rate 61/min is above the App's limit of 60 per 60 s" in info.value.message
    with pytest.raises(UsageError) as info:
        pacing.resolve_pacing(None, None, cfg(broadcast_rate="2/s"))
    assert "broadcast_rate 2/s (from profile (shop in config.toml))" in info.value.message
    assert pacing.resolve_pacing("1/s", None, cfg()).limit == 60  # exactly the limit is fine


def test_flag_beats_setting_beats_the_apps_limit():
    assert pacing.resolve_pacing("20/min", None, cfg(broadcast_rate="30/min")).limit == 20
    setting = pacing.resolve_pacing(None, None, cfg(broadcast_rate="30/min"))
    assert (setting.limit, setting.rate_source) == (30, "profile (shop in config.toml)")
    whole = pacing.resolve_pacing(None, None, cfg())
    assert (whole.limit, whole.rate_source) == (60, "rate_limit")


# --- spacing and the schedule ---------------------------------------------------------------------


def test_auto_spacing_is_window_over_share():
    p = pacing.resolve_pacing("40/min", None, cfg())
    assert (p.limit, p.spacing, p.mode) == (40, 1.5, "auto")
    assert p.sustained * 60 == pytest.approx(40 * 60 / 60.25)


def test_burst_and_fixed_spacing():
    assert pacing.resolve_pacing("40/min", "burst", cfg()).spacing == 0
    assert pacing.resolve_pacing("40/min", "0", cfg()).mode == "burst"
    fixed = pacing.resolve_pacing("40/min", "3", cfg())
    assert (fixed.spacing, fixed.mode) == (3.0, "fixed")
    assert fixed.sustained == pytest.approx(1 / 3)  # slower than the share: spacing rules
    for bad in ("-1", "fast", "1e9", "nan"):
        with pytest.raises(UsageError):
            pacing.parse_spacing(bad)


def test_a_share_below_one_per_window_is_held_down_by_spacing_even_in_bursts():
    p = pacing.resolve_pacing("30/h", "burst", cfg())
    assert (p.limit, p.spacing) == (1, 120.0)


@pytest.mark.parametrize("rate, spacing", [("40/min", None), ("40/min", "burst"),
                                           ("40/min", "4"), ("60/min", None), ("7/min", "0.5"),
                                           ("90/h", None), ("1.5/min", None), ("500/h", None)])
def test_offsets_and_capacity_match_the_throttle_itself(rate, spacing):
    """The schedule's arithmetic against the real throttle driven by a fake clock, with
    answers arriving at once: the n-th send goes out exactly at offset(n)."""
    p = pacing.resolve_pacing(rate, spacing, cfg())
    clock = FakeClock(0)
    t = Throttle(60, 60.0, store=MemoryStore(), margin=0.25, clock=clock, sleep=clock.sleep)
    t.budget = p.budget("b")
    sent = []
    for _ in range(300):
        t.release(t.acquire())
        sent.append(clock.now)
    assert sent == pytest.approx([p.offset(k) for k in range(300)])
    for span in (0.5, 10, 59.9, 60.25, 61, 200):
        assert p.capacity(span) == sum(1 for s in sent if s < span)


@pytest.mark.parametrize("rate, per_hour", [("90/h", 90), ("1.5/min", 90), ("500/h", 500),
                                            ("1/h", 1), ("20/h", 20)])
def test_auto_spacing_keeps_a_rate_that_is_not_whole_per_window(rate, per_hour):
    """90/h used to run at 60/h and 500/h at 480/h: the share was rounded down per window."""
    p = pacing.resolve_pacing(rate, None, cfg())
    clock = FakeClock(0)
    t = Throttle(60, 60.0, store=MemoryStore(), margin=0.25, clock=clock, sleep=clock.sleep)
    t.budget = p.budget("b")
    sent = []
    while clock.now < 4 * 3600:
        t.release(t.acquire())
        sent.append(clock.now)
    in_hours = sum(1 for s in sent if s < 3 * 3600)
    assert in_hours == pytest.approx(3 * per_hour, abs=1)
    assert p.limit <= 60


def test_burst_spacing_says_when_it_rounds_the_rate_down():
    e = pacing.Etiquette(pacing.resolve_pacing("90/h", "burst", cfg()), JAKARTA)
    line = e.describe(10, ts("2026-12-01 10:00"))
    assert "at 59.8/h (one every 1 min)" in line  # 1 per window + margin, not 90/h
    assert "[--rate 90/h is 1 per 1 min window with --spacing burst: 1/min; --spacing auto " \
        "keeps the exact rate]" in line
    exact = pacing.Etiquette(pacing.resolve_pacing("90/h", None, cfg()), JAKARTA)
    assert "at 1.5/min (one every 40 s)" in exact.describe(10, ts("2026-12-01 10:00"))
    assert exact.rounding_note() is None


@pytest.mark.parametrize("rate, spacing, shown", [
    ("1/h", None, "at 1/h (one every 1 h)"),
    ("30/h", None, "at 30/h (one every 2 min)"),
    ("60/min", None, "at 60/min (one every 1 s)"),
    ("40/min", "4", "at 15/min (one every 4 s)"),
    ("60/min", "0.1", "(bursts of up to 60, 0.1 s apart every 1 min)"),
    ("60/min", "burst", "(bursts of up to 60 every 1 min)"),
])
def test_rates_and_spacing_are_shown_in_human_units(rate, spacing, shown):
    e = pacing.Etiquette(pacing.resolve_pacing(rate, spacing, cfg()), JAKARTA)
    assert shown in e.describe(10, ts("2026-12-01 10:00"))


@pytest.mark.parametrize("at, between, tz", [
    ("0001-01-01 00:00", None, "Europe/Berlin"),
    ("9999-12-31 23:59", None, "Etc/GMT+12"),
    ("9999-12-31 23:00", "08:00-09:00", "Asia/Jakarta"),
])
def test_an_at_out_of_datetimes_range_is_a_usage_error(at, between, tz):
    with pytest.raises(UsageError) as refused:
        pacing.prepare(cfg(), rate=None, spacing=None, between=between, tz=tz, at=at,
                       now=ts("2026-12-01 10:00"))
    assert refused.value.exit_code == ExitCode.USAGE


def test_an_eta_past_the_year_9999_is_unreachable_not_a_crash():
    e = pacing.prepare(cfg(), rate="1/h", spacing=None, between="08:00-08:01", tz="Etc/GMT-14",
                       at="9998-12-01 00:00", now=ts("2026-12-01 10:00"))
    assert "not within any reachable window" in e.describe(100_000, ts("2026-12-01 10:00"))
    assert e.as_json(100_000, ts("2026-12-01 10:00"))["done_at"] is None
    late = pacing.prepare(cfg(), rate="1/h", spacing=None, between=None, tz="UTC",
                          at="9998-12-31 00:00", now=ts("2026-12-01 10:00"))
    assert "not within any reachable window" in late.describe(100_000, ts("2026-12-01 10:00"))


# --- quiet hours ---------------------------------------------------------------------------------


def test_between_parses_and_refuses_clearly():
    assert QuietHours.parse("08:00-20:00", JAKARTA).start == 8 * 60
    assert QuietHours.parse("8:00–20:30", JAKARTA).end == 20 * 60 + 30  # en dash, one digit
    assert QuietHours.parse("00:00-24:00", JAKARTA).end == 24 * 60
    for bad in ("08:00", "8-20", "25:00-08:00", "08:00-08:00", "08:60-09:00", ""):
        with pytest.raises(UsageError):
            QuietHours.parse(bad, JAKARTA)


def test_start_inside_the_window_sends_now():
    hours = QuietHours.parse("08:00-20:00", JAKARTA)
    now = ts("2026-12-01 19:30")
    assert hours.is_open(now) and hours.next_open(now) == now
    assert hours.closes(now) == ts("2026-12-01 20:00")
    assert schedule.make_gate(hours, None)(now) is None


def test_start_outside_the_window_waits_for_the_next_opening():
    hours = QuietHours.parse("08:00-20:00", JAKARTA)
    assert hours.next_open(ts("2026-12-01 20:00")) == ts("2026-12-02 08:00")  # end excluded
    assert hours.next_open(ts("2026-12-02 03:00")) == ts("2026-12-02 08:00")
    assert schedule.make_gate(hours, None)(ts("2026-12-01 23:00")) == ts("2026-12-02 08:00")


def test_a_window_crossing_midnight():
    hours = QuietHours.parse("22:00-06:00", JAKARTA)
    assert hours.is_open(ts("2026-12-01 23:59")) and hours.is_open(ts("2026-12-02 05:59"))
    assert not hours.is_open(ts("2026-12-02 06:00"))
    assert hours.closes(ts("2026-12-01 23:00")) == ts("2026-12-02 06:00")
    assert hours.next_open(ts("2026-12-02 12:00")) == ts("2026-12-02 22:00")
    spans = hours.spans(ts("2026-12-02 12:00"))
    assert next(spans) == (ts("2026-12-02 22:00"), ts("2026-12-03 06:00"))
    assert next(spans) == (ts("2026-12-03 22:00"), ts("2026-12-04 06:00"))


def test_wall_clock_hours_across_a_daylight_saving_change():
    hours = QuietHours.parse("08:00-20:00", BERLIN)
    # 2026-10-25: clocks go back at 03:00; the window still opens at 08:00 local (UTC+1 now).
    assert hours.next_open(ts("2026-10-25 03:30", BERLIN)) == ts("2026-10-25 08:00", BERLIN)
    assert ts("2026-10-25 08:00", BERLIN) - ts("2026-10-24 08:00", BERLIN) == 25 * 3600


def test_at_in_the_past_is_refused_and_a_future_one_gates():
    now = ts("2026-12-01 10:00")
    with pytest.raises(UsageError) as info:
        schedule.parse_at("2026-12-01 09:59", JAKARTA, now)
    assert info.value.exit_code == ExitCode.USAGE and "in the past" in info.value.message
    with pytest.raises(UsageError):
        schedule.parse_at("2026-12-01 10:00", JAKARTA, now)  # now is not later
    for bad in ("tomorrow", "2026-13-01 08:00", "2026-02-30 08:00", "2026-12-01"):
        with pytest.raises(UsageError):
            schedule.parse_at(bad, JAKARTA, now)
    at = schedule.parse_at("2026-12-01 12:00", JAKARTA, now)
    gate = schedule.make_gate(None, at)
    assert gate(now) == at and gate(at) is None


def test_at_outside_quiet_hours_waits_for_both():
    hours = QuietHours.parse("08:00-20:00", JAKARTA)
    gate = schedule.make_gate(hours, ts("2026-12-01 21:00"))
    assert gate(ts("2026-12-01 10:00")) == ts("2026-12-02 08:00")


def test_unknown_zone_is_exit_2():
    with pytest.raises(UsageError) as info:
        schedule.zone("Asia/Jakrta")
    assert "Asia/Jakrta" in info.value.message


def test_labels_use_the_zones_abbreviation():
    now = ts("2026-12-01 19:30")
    assert schedule.when_label(ts("2026-12-01 20:00"), JAKARTA, now) == "20:00 WIB"
    assert schedule.when_label(ts("2026-12-02 08:00"), JAKARTA, now) == "Wed 08:00 WIB"


# --- the ETA -------------------------------------------------------------------------------------


def test_eta_of_the_issue_example():
    """5,000 messages at 40/min between 08:00-20:00 WIB, started Mon 19:30."""
    e = pacing.prepare(cfg(), rate="40/min", spacing=None, between="08:00-20:00",
                       tz="Asia/Jakarta", at=None, now=0)
    now = ts("2026-11-30 19:30")  # a Monday
    p = e.pacing
    first = p.capacity(30 * 60)  # 19:30-20:00
    second = p.capacity(12 * 3600)  # Tue 08:00-20:00
    assert first + second >= 5000 > first
    done = e.finish(now, 5000)
    assert done == ts("2026-12-01 08:00") + p.offset(5000 - first - 1)
    line = e.describe(5000, now)
    assert line.startswith("5,000 message(s) at 40/min (one every 1.5 s) between "
                           "08:00–20:00 WIB: done Tue ")
    assert e.as_json(5000, now)["done_at"].startswith("2026-12-01T")


def test_eta_without_hours_and_with_a_later_start():
    e = pacing.prepare(cfg(), rate=None, spacing="burst", between=None, tz="UTC",
                       at="2026-12-01 08:00", now=ts("2026-12-01 07:00", ZoneInfo("UTC")))
    now = ts("2026-12-01 07:00", ZoneInfo("UTC"))
    # 120 in bursts of 60: the second burst one window (+ margin) after the first.
    assert e.finish(now, 120) == ts("2026-12-01 08:00", ZoneInfo("UTC")) + 60.25
    assert e.remaining(now, 0) == 3600


def test_eta_beyond_reach_is_said_not_looped_forever():
    e = pacing.prepare(cfg(), rate="30/h", spacing=None, between="08:00-08:01", tz="UTC",
                       at=None, now=0)
    assert e.pacing.capacity(60) == 1
    assert math.isfinite(e.finish(0, 5))  # one a day: five days
    assert e.finish(0, 5) == pytest.approx(4 * 86400 + 8 * 3600)


# --- progress: the schedule's ETA and sustained rate, not the bursts seen so far -----------------


def test_progress_log_lines_carry_the_schedules_eta_and_pauses(capsys):
    from cloudchat_cli.output.progress import BroadcastProgress

    e = pacing.prepare(cfg(), rate="40/min", spacing=None, between="08:00-20:00",
                       tz="Asia/Jakarta", at=None, now=0)
    clock = FakeClock(ts("2026-12-01 19:59"))
    progress = BroadcastProgress(100, tty=False, log_every=1, schedule=e, clock=clock)
    progress.on_row(2, "sent", {"id": "m1"})  # a burst of one: 'rate' would be huge
    line = capsys.readouterr().err
    assert "1/100: 1 sent" in line and "40/min, ETA " in line
    # 99 left at 19:59 → 40 fit before 20:00, the rest from 08:00 the next day.
    expected = e.remaining(clock.now, 99)
    assert expected > 12 * 3600
    assert f"ETA {fmt_duration(expected)}" in line
    clock.advance(60)
    progress.paused(ts("2026-12-02 08:00"))
    assert "paused until Wed 08:00 WIB" in capsys.readouterr().err
    progress.paused(ts("2026-12-02 08:00"))  # the same pause, a step later: no new line
    assert capsys.readouterr().err == ""
