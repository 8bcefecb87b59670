"""Read a broadcast CSV as a stream of (row number, {column: value}), failing with row and column.

UTF-8 with or without BOM; the delimiter is sniffed from the header (comma, semicolon — what
spreadsheets in Indonesian locale write — or tab) unless given. Rows are numbered as a
spreadsheet shows them: the header is row 1, the first data row is row 2.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudchat_cli.core.errors import UsageError

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
MAX_FIELD = 64 * 1024  # no field of a message needs more; 10 MB fields are refused
MAX_COLUMNS = 512
SNIFF_BYTES = 64 * 1024


class CsvError(UsageError):
    """The CSV cannot be used; the message names the row (and column) where possible."""


@dataclass(frozen=True)
class CsvInfo:
    path: Path
    delimiter: str
    header: list[str]
    sha256: str
    size: int


def _check_path(path: Path) -> None:
    if not path.exists():
        raise CsvError(f"{path}: no such file")
    if path.is_dir():
        raise CsvError(f"{path} is a directory, not a CSV file")


def _check_encoding(head: bytes, path: Path) -> None:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CsvError(
            f"{path} is UTF-16 (it starts with a UTF-16 byte-order mark)",
            hint="save it as 'CSV UTF-8' (in Excel: File → Save As → CSV UTF-8)",
        )
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise CsvError(f"{path} is UTF-32; save it as UTF-8")


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 and size of the file, read in chunks (flat memory)."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise CsvError(f"cannot read {path}: {exc.strerror}") from None
    return digest.hexdigest(), size


def sniff_delimiter(header_line: str) -> str:
    """The candidate delimiter that occurs most in the header line (outside quotes)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for ch in header_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _first_line(text: str) -> str:
    """The header record's text (a quoted header cell may contain a newline)."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch in "\r\n" and not quoted:
            return text[:i]
    return text


def open_csv(path: Path, delimiter: str | None = None) -> CsvInfo:
    """Check the file and its header; return what the reader needs. Reads the file once."""
    _check_path(path)
    sha, size = file_digest(path)
    if size == 0:
        raise CsvError(f"{path} is empty", hint="the first row must be a header, e.g. to,name")
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    _check_encoding(head, path)
    text = head.decode("utf-8-sig", errors="ignore")
    if delimiter is None:
        delimiter = sniff_delimiter(_first_line(text))
    elif delimiter in ("\\t", "tab"):
        delimiter = "\t"
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise CsvError(f"--delimiter must be one character, not {delimiter!r}")
    header: list[str] | None = None
    for _row, fields in _records(path, delimiter, None):
        header = fields
        break
    if not header or all(not h.strip() for h in header):
        raise CsvError(f"{path}: the header row is empty")
    names = [h.strip() for h in header]
    if len(names) > MAX_COLUMNS:
        raise CsvError(f"{path}: {len(names)} columns; at most {MAX_COLUMNS} are supported")
    seen: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if not name:
            raise CsvError(f"{path}: row 1, column {i} has an empty header name")
        if name in seen:
            raise CsvError(
                f"{path}: row 1 has the column name {name!r} twice (columns {seen[name]} and {i})"
            )
        seen[name] = i
    return CsvInfo(path, delimiter, names, sha, size)


def _decoded_lines(stream: io.BufferedReader) -> Iterator[str]:
    """Decode line by line, so a bad byte is reported in the row that holds it.

    Splitting bytes on newline is safe for UTF-8: 0x0A never occurs inside a multi-byte
    character."""
    first = True
    for raw in stream:
        if first:
            raw = raw.removeprefix(codecs.BOM_UTF8)
            first = False
        yield raw.decode("utf-8")


def _records(path: Path, delimiter: str, width: int | None) -> Iterator[tuple[int, list[str]]]:
    """Yield (record number, fields), turning every decoding/parsing problem into CsvError."""
    stream = path.open("rb")
    reader = csv.reader(_decoded_lines(stream), delimiter=delimiter, strict=True)
    number = 0
    old_limit = csv.field_size_limit(MAX_FIELD)
    try:
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                byte = exc.object[exc.start]
                raise CsvError(
                    f"{path}: row {number + 1} is not UTF-8 (byte value 0x{byte:02x})",
                    hint="save the file as 'CSV UTF-8'",
                ) from None
            except csv.Error as exc:
                message = str(exc)
                if "field larger than field limit" in message:
                    message = f"a field is larger than {MAX_FIELD // 1024} KiB"
                elif "NUL" in message or "\\x00" in message:
                    message = "contains a NUL byte (is this a binary or UTF-16 file?)"
                raise CsvError(f"{path}: row {number + 1}: {message}") from None
            number += 1
            if width is not None and len(fields) != width:
                if fields == [] or fields == [""]:
                    continue  # blank line
                raise CsvError(
                    f"{path}: row {number} has {len(fields)} fields, the header has {width}",
                    hint="check for an unquoted delimiter or a missing quote in that row",
                )
            for col, value in enumerate(fields, 1):
                if "\x00" in value:
                    raise CsvError(f"{path}: row {number}, column {col} contains a NUL byte")
            yield number, fields
    finally:
        csv.field_size_limit(old_limit)
        stream.close()


def rows(info: CsvInfo) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (row number, {column: value}) for every data row, streaming."""
    records = _records(info.path, info.delimiter, len(info.header))
    next(records, None)  # the header
    for number, fields in records:
        yield number, dict(zip(info.header, fields, strict=True))
