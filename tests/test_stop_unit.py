"""core/stop.GracefulStop with real signals sent to this process."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from cloudchat_cli.core.stop import GracefulStop, Stopped


def test_first_signal_requests_second_stops_now_third_changes_nothing():
    heard = []
    before = signal.getsignal(signal.SIGINT)
    with GracefulStop(on_first=lambda n: heard.append(("first", n)),
                      on_second=lambda n: heard.append(("second", n))) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested.is_set() and not stop.now.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.now.is_set()
        os.kill(os.getpid(), signal.SIGINT)  # handled, and nothing more happens
        assert stop.signal == "SIGTERM" and stop.interrupted
    assert heard == [("first", "SIGTERM"), ("second", "Ctrl-C")]
    assert signal.getsignal(signal.SIGINT) is before  # given back


def test_sleep_ends_at_once_when_a_stop_is_requested_from_another_thread():
    stop = GracefulStop()
    threading.Timer(0.05, stop.request).start()
    with pytest.raises(Stopped):
        stop.sleep(3600)
    assert not stop.interrupted  # code asked, not a signal


def test_sleep_without_a_stop_returns():
    GracefulStop().sleep(0)


def test_outside_the_main_thread_no_handler_is_installed():
    seen = {}

    def body():
        before = signal.getsignal(signal.SIGINT)
        with GracefulStop() as stop:
            seen["same"] = signal.getsignal(signal.SIGINT) is before
            stop.request_now()
            seen["now"] = stop.wait_now(0)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == {"same": True, "now": True}
