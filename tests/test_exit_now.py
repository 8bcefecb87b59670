"""``exit_now`` skips interpreter teardown; it must never lose what a file still buffers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.e2e  # each test runs a fresh interpreter (exit_now ends its process)

OPEN_FILE = textwrap.dedent("""
    import sys
    from cloudchat_cli.entry import exit_now

    class Teardown:
        def __del__(self):
            sys.stdout.write(" torn down")

    witness = Teardown()  # only interpreter teardown would delete it
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "text":
        fh = open(path, "w", encoding="utf-8")
        fh.write("row 1\\nrow 2\\n")  # buffered: nothing reaches the file until a flush
    elif mode == "binary":
        fh = open(path, "wb")
        fh.write(b"\\x00\\x01 bytes")
    elif mode == "append-in-list":
        handles = [open(path, "a", encoding="utf-8")]  # reachable only through a container
        handles[0].write("appended")
    elif mode == "read-only":
        with open(path, "w", encoding="utf-8") as done:
            done.write("written and closed")
        fh = open(path, encoding="utf-8")  # open, but nothing to lose
    sys.stdout.write("out")
    exit_now(3)
""")


@pytest.mark.parametrize(("mode", "content"), [
    ("text", b"row 1\nrow 2\n"),
    ("binary", b"\x00\x01 bytes"),
    ("append-in-list", b"appended"),
])
def test_exit_now_keeps_what_an_open_file_buffered(env, tmp_path, mode, content):
    target = tmp_path / "out.txt"
    proc = subprocess.run([sys.executable, "-c", OPEN_FILE, str(target), mode], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith("out")
    assert target.read_bytes() == content


def test_exit_now_still_skips_teardown_with_only_read_only_files_open(env, tmp_path):
    target = tmp_path / "in.txt"
    proc = subprocess.run([sys.executable, "-c", OPEN_FILE, str(target), "read-only"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out", "")
    assert target.read_text() == "written and closed"


def test_exit_now_still_skips_teardown_with_an_inherited_writable_pipe(env, tmp_path):
    """A parent's pipe (a job server, a supervisor) holds no buffer of ours."""
    import os

    read_end, write_end = os.pipe()
    try:
        proc = subprocess.run([sys.executable, "-c", OPEN_FILE, str(tmp_path / "x"), "none"],
                              env=env, capture_output=True, text=True, timeout=60,
                              pass_fds=(write_end,))
    finally:
        os.close(read_end)
        os.close(write_end)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out", "")
