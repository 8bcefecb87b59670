"""Preflight: check every row before the first request, and write the plan into the journal."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services.broadcast import csvsource, xlsxsource
from cloudchat_cli.services.broadcast.history import message_digest
from cloudchat_cli.services.broadcast.journal import Journal
from cloudchat_cli.services.broadcast.template import Template, parse_template
from cloudchat_cli.services.countrycodes import country_code
from cloudchat_cli.services.messages import (
    AS_TEXT,
    InvalidMessage,
    MessageSpec,
    build_payload,
    spreadsheet_artefact,
)

BATCH = 1000
FIELD_COLUMN = {"text": "text", "media_url": "media_url", "caption": "caption",
                "filename": "filename", "type": "type", "channel": "channel"}


@dataclass
class BroadcastOptions:
    """Everything that decides what each row's message is."""

    csv_path: Path
    template: str | None = None
    to_column: str = "to"
    channel: str | None = None  # --channel, else the row's, else the profile's default
    default_channel: str = "whatsapp"
    default_country_code: str = ""
    delimiter: str | None = None
    allow_duplicates: bool = False
    encoding: str | None = None  # --encoding for a legacy file; a BOM wins
    sheet: str | None = None  # --sheet of a workbook (default: its first)

    def fingerprint(self) -> str:
        data = asdict(self)
        data["csv_path"] = str(Path(self.csv_path).resolve())
        for name in ("encoding", "sheet"):
            if data[name] is None:
                del data[name]  # journals written before the option existed still resume
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> dict:
        data = asdict(self)
        data["csv_path"] = str(Path(self.csv_path).resolve())
        return data


@dataclass
class Plan:
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    per_channel: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[int, str]] = field(default_factory=list)
    empty_rows: int = 0  # fully empty rows: skipped, not counted in ``rows``
    notes: list[str] = field(default_factory=list)  # what the reader ignored
    warnings: list[dict] = field(default_factory=list)  # e.g. unexpected country codes


def open_input(options: BroadcastOptions) -> csvsource.CsvInfo:
    """Open the input as a workbook (.xlsx/.xlsm, by name and content) or as CSV text."""
    path = Path(options.csv_path)
    if xlsxsource.is_workbook(path):
        if options.delimiter is not None or options.encoding is not None:
            raise UsageError("--delimiter and --encoding are for CSV files, not workbooks")
        return xlsxsource.open_xlsx(path, options.sheet, options.to_column)
    if options.sheet is not None:
        raise UsageError(f"--sheet is for .xlsx workbooks; {path} is read as CSV")
    return csvsource.open_csv(path, options.delimiter, options.encoding)


def input_rows(info: csvsource.CsvInfo, stats: csvsource.RowStats | None = None):
    """The input's data rows as (row number, {column: value}), whatever its format."""
    reader = xlsxsource.rows if info.sheet is not None else csvsource.rows
    return reader(info, stats)


def prepare(options: BroadcastOptions) -> tuple[csvsource.CsvInfo, Template | None]:
    """Open the input, check its header against the options and the template."""
    info = open_input(options)
    if options.to_column not in info.header:
        raise csvsource.CsvError(
            f"{info.path}: no {options.to_column!r} column in the header",
            hint=f"columns: {', '.join(info.header)}; choose one with --to-column",
        )
    template = parse_template(options.template) if options.template is not None else None
    if template is not None:
        template.check_columns(info.header, "the sheet" if info.sheet is not None else "the CSV")
    elif "text" not in info.header and not {"media_url"} & set(info.header):
        raise UsageError(
            "no message: give --template or --template-file, or add a 'text' column",
            hint='e.g. --template "Halo {name}, pesanan {order_id} sudah dikirim"',
        )
    return info, template


def _row_message(
    values: dict[str, str], options: BroadcastOptions, template: Template | None
) -> dict:
    def col(name: str) -> str | None:
        value = values.get(name)
        return value if value not in (None, "") else None

    text = template.render(values) if template is not None else col("text")
    spec = MessageSpec(
        to=values[options.to_column],
        channel=options.channel or col("channel") or options.default_channel,
        text=text,
        type=col("type"),
        media_url=col("media_url"),
        caption=col("caption"),
        filename=col("filename"),
    )
    return build_payload(spec, options.default_country_code)


def _digest(payload: dict) -> bytes:
    return message_digest(payload)  # one definition: history looks these up across runs


def run_preflight(
    info: csvsource.CsvInfo,
    template: Template | None,
    options: BroadcastOptions,
    journal: Journal,
    *,
    progress: Callable[[int], None] | None = None,
) -> Plan:
    """Check every row (streaming) and record it in the journal as pending/invalid/skipped."""
    journal.reset_rows()
    batch: list[tuple] = []
    hashes: list[bytes | None] = []
    seen = 0
    stats = csvsource.RowStats()
    codes = CountryCodes()

    def flush() -> None:
        journal.add_rows(batch, hashes)
        batch.clear()
        hashes.clear()

    blanks = Blanks(template)
    for number, values in input_rows(info, stats):
        seen += 1
        recipient = values.get(options.to_column, "")
        try:
            payload = _row_message(values, options, template)
        except InvalidMessage as exc:
            column = options.to_column if exc.field == "to" else FIELD_COLUMN.get(exc.field or "")
            where = f"row {number}" + (f", column {column!r}" if column else "")
            batch.append((number, recipient[:64], None, None, "invalid", f"{where}: {exc.message}"))
            hashes.append(None)
            if exc.field == "to" and spreadsheet_artefact(recipient):
                codes.add_damaged(recipient)  # 6.28123E+12 still says which country the sheet is
        else:
            batch.append((number, payload["to"], payload["channel"],
                          json.dumps(payload, ensure_ascii=False), "pending", None))
            hashes.append(None if options.allow_duplicates else _digest(payload))
            blanks.add(number, values)
            if payload["channel"] == "whatsapp":
                codes.add(number, payload["to"])
        if len(batch) >= BATCH:
            flush()
            if progress:
                progress(seen)
    flush()
    if seen == 0:
        empty = f" ({stats.empty} empty row(s))" if stats.empty else ""
        raise csvsource.CsvError(f"{info.path} has a header but no data rows{empty}")
    advice = ([f"{sum(codes.damaged.values())} recipient(s) were changed by the spreadsheet: "
               f"{AS_TEXT}"] if codes.damaged else [])
    journal.set_meta(plan_extra={
        "empty_rows": stats.empty,
        "notes": list(info.notes) + advice,
        "warnings": blanks.warnings() + codes.warnings(options.default_country_code),
    })
    journal.set_meta(preflight_done="1")
    return summarise(journal)


def summarise(journal: Journal, error_limit: int = 20) -> Plan:
    counts = journal.counts()
    plan = Plan(
        rows=sum(counts.values()),
        invalid=counts["invalid"],
        duplicates=counts["skipped"],
        per_channel=journal.channel_counts(),
        errors=journal.errors(("invalid",), error_limit),
    )
    plan.valid = plan.rows - plan.invalid - plan.duplicates
    try:
        extra = json.loads(journal.meta().get("plan_extra") or "{}")
    except ValueError:
        extra = {}
    plan.empty_rows = int(extra.get("empty_rows", 0))
    plan.notes = list(extra.get("notes", []))
    plan.warnings = list(extra.get("warnings", []))
    return plan


def plan_json(plan: Plan, counts: dict, etiquette, info: csvsource.CsvInfo, *, preview: list,
              skip_invalid: bool, invalid: list[dict], strict: bool = False) -> dict:
    """The whole plan as one JSON object (``broadcast --dry-run --json``); ``etiquette`` is
    the run's pacing.Etiquette (its schedule gives the ETA)."""
    import time

    schedule = etiquette.as_json(counts["pending"], time.time())
    pacing = etiquette.pacing
    return {
        "dry_run": True,
        "would_refuse": bool(plan.invalid and not skip_invalid) or bool(refusal(plan, strict)),
        "csv": str(info.path),
        "sheet": info.sheet,
        "encoding": info.encoding or None,
        "delimiter": info.delimiter or None,
        "rows": plan.rows,
        "valid": plan.valid,
        "invalid": plan.invalid,
        "duplicates": plan.duplicates,
        "empty_rows": plan.empty_rows,
        "per_channel": plan.per_channel,
        "to_send": counts["pending"],
        "eta_seconds": schedule["eta_seconds"],
        "rate_limit": {"requests": pacing.app_limit, "window_seconds": pacing.window},
        "schedule": schedule,
        "invalid_rows": invalid,
        "warnings": plan.warnings,
        "notes": plan.notes,
        "preview": [{"row": row, **payload} for row, payload in preview],
    }


def invalid_rows(journal: Journal, options: BroadcastOptions) -> list[dict]:
    """Every invalid row as {row, column, reason} (the journal keeps 'row N, column C: …')."""
    columns = {options.to_column, *FIELD_COLUMN.values()}
    found = []
    for row, error in journal.errors(("invalid",), 2**62):
        text = (error or "").removeprefix(f"row {row}")
        column = None
        for name in columns:
            prefix = f", column {name!r}"
            if text.startswith(prefix):
                column, text = name, text[len(prefix):]
                break
        found.append({"row": row, "column": column, "reason": text.removeprefix(": ")})
    return found


def refusal(plan: Plan, strict: bool) -> UsageError | None:
    """The error ``--strict`` makes of the plan's warnings about empty template columns."""
    empty = [w for w in plan.warnings if w.get("type") == "empty_column"]
    if not (strict and empty):
        return None
    where = "; ".join(
        f"{{{w['column']}}} is empty in row(s) {', '.join(map(str, w['rows']))}"
        + (f" and {w['count'] - len(w['rows'])} more" if w["count"] > len(w["rows"]) else "")
        for w in empty)
    return UsageError(f"--strict: {where}; nothing was sent",
                      hint="fill the cells, or give the template a fallback, e.g. {name|Kak}")


class Blanks:
    """Rows whose message would have a gap: a template ``{column}`` (no fallback) that is empty."""

    EXAMPLES = 10

    def __init__(self, template: Template | None) -> None:
        self.columns = template.bare_columns if template is not None else []
        self.rows: dict[str, list[int]] = {c: [] for c in self.columns}
        self.counts: Counter[str] = Counter()

    def add(self, row: int, values: dict[str, str]) -> None:
        for column in self.columns:
            if not values[column].strip():
                self.counts[column] += 1
                if len(self.rows[column]) < self.EXAMPLES:
                    self.rows[column].append(row)

    def warnings(self) -> list[dict]:
        found = []
        for column in self.columns:
            count = self.counts[column]
            if not count:
                continue
            rows = self.rows[column]
            shown = ", ".join(map(str, rows)) + (", …" if count > len(rows) else "")
            found.append({
                "type": "empty_column", "column": column, "count": count, "rows": rows,
                "message": f"{{{column}}} is empty in {count} row(s): row(s) {shown}; the message "
                f"has a gap there. Fill the cells, give a fallback like {{{column}|Kak}}, or "
                f"--strict to refuse"})
        return found


class CountryCodes:
    """Which country code each WhatsApp row's number starts with, to spot the odd ones out:
    a sheet of Indonesian numbers with one +81 row most likely lost a leading zero
    (0812… stored as a number is 812…, which reads as Japan's +81)."""

    EXAMPLES = 10

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()  # valid WhatsApp rows, by country code
        self.damaged: Counter[str] = Counter()  # rows refused as spreadsheet artefacts
        self.examples: dict[str, list[tuple[int, str]]] = {}

    def add_damaged(self, raw: str) -> None:
        """A refused number like 6.28123E+12 or '6281…: its leading digits still count
        towards the sheet's majority (it is never warned about: it is already an error)."""
        digits = "".join(ch for ch in raw if ch.isascii() and ch.isdigit())
        self.damaged[country_code(digits) or "?"] += 1

    def add(self, row: int, number: str) -> None:
        code = country_code(number) or "?"
        self.counts[code] += 1
        rows = self.examples.setdefault(code, [])
        if len(rows) < self.EXAMPLES:
            rows.append((row, number))

    def warnings(self, default_code: str = "") -> list[dict]:
        if not self.counts:
            return []
        expected, why = default_code, "default_country_code"
        if not expected:
            votes = self.counts + self.damaged
            total = sum(votes.values())
            code, count = votes.most_common(1)[0]
            if count * 2 <= total or code == "?":
                return []  # no clear majority: a mixed list is not suspicious
            expected, why = code, "most rows"
        found = []
        for code, count in sorted(self.counts.items(), key=lambda kv: -kv[1]):
            if code == expected:
                continue
            rows = [row for row, _ in self.examples[code]]
            shown = ", ".join(map(str, rows)) + (", …" if count > len(rows) else "")
            number = self.examples[code][0][1]
            message = (f"{count} row(s) have country code +{code}, not +{expected} ({why}): "
                       f"row(s) {shown}")
            if 8 <= len(expected + number) <= 15:
                message += (f". If they are local numbers, the spreadsheet dropped their leading "
                            f"0 (0{number} was stored as the number {number}); format the "
                            f"column as Text, restore the 0, and export again")
            found.append({"type": "country_code", "country_code": code, "expected": expected,
                          "count": count, "rows": rows, "message": message})
        return found
