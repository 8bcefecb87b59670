"""Preflight: check every row before the first request, and write the plan into the journal."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services.broadcast import csvsource
from cloudchat_cli.services.broadcast.history import message_digest
from cloudchat_cli.services.broadcast.journal import Journal
from cloudchat_cli.services.broadcast.template import Template, parse_template
from cloudchat_cli.services.messages import InvalidMessage, MessageSpec, build_payload

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

    def fingerprint(self) -> str:
        data = asdict(self)
        data["csv_path"] = str(Path(self.csv_path).resolve())
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


def prepare(options: BroadcastOptions) -> tuple[csvsource.CsvInfo, Template | None]:
    """Open the CSV, check its header against the options and the template."""
    info = csvsource.open_csv(Path(options.csv_path), options.delimiter)
    if options.to_column not in info.header:
        raise csvsource.CsvError(
            f"{info.path}: no {options.to_column!r} column in the header",
            hint=f"columns: {', '.join(info.header)}; choose one with --to-column",
        )
    template = parse_template(options.template) if options.template is not None else None
    if template is not None:
        template.check_columns(info.header)
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

    def flush() -> None:
        journal.add_rows(batch, hashes)
        batch.clear()
        hashes.clear()

    for number, values in csvsource.rows(info):
        seen += 1
        recipient = values.get(options.to_column, "")
        try:
            payload = _row_message(values, options, template)
        except InvalidMessage as exc:
            column = options.to_column if exc.field == "to" else FIELD_COLUMN.get(exc.field or "")
            where = f"row {number}" + (f", column {column!r}" if column else "")
            batch.append((number, recipient[:64], None, None, "invalid", f"{where}: {exc.message}"))
            hashes.append(None)
        else:
            batch.append((number, payload["to"], payload["channel"],
                          json.dumps(payload, ensure_ascii=False), "pending", None))
            hashes.append(None if options.allow_duplicates else _digest(payload))
        if len(batch) >= BATCH:
            flush()
            if progress:
                progress(seen)
    flush()
    if seen == 0:
        raise csvsource.CsvError(f"{info.path} has a header but no data rows")
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
    return plan
