"""The one output helper behind --json and --quiet."""

from __future__ import annotations

import json

from cloudchat_cli.commands.options import JSON_HELP, QUIET_HELP, json_option, quiet_option
from cloudchat_cli.output.result import emit

DATA = {"used": 3, "note": "ünïcode"}


def _human(data):
    print(f"used {data['used']}")


def test_json_prints_the_data_as_one_json_line_when_piped(capsys):
    emit(DATA, json_out=True, human=_human)
    out = capsys.readouterr()
    assert json.loads(out.out) == DATA and out.out.count("\n") == 1 and out.err == ""


def test_json_wins_over_quiet(capsys):
    emit(DATA, json_out=True, quiet=True, human=_human)
    assert json.loads(capsys.readouterr().out) == DATA


def test_quiet_prints_nothing(capsys):
    emit(DATA, quiet=True, human=_human)
    assert capsys.readouterr() == ("", "")


def test_otherwise_the_human_rendering(capsys):
    emit(DATA, human=_human)
    assert capsys.readouterr() == ("used 3\n", "")


def test_the_flags_keep_their_names_and_default_help():
    assert (json_option().param_decls, json_option().help) == (("--json",), JSON_HELP)
    assert (quiet_option().param_decls, quiet_option().help) == (("--quiet", "-q"), QUIET_HELP)
    assert json_option("A JSON array.").help == "A JSON array."
