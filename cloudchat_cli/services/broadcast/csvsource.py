"""Read a broadcast CSV as a stream of (row number, {column: value}), failing with row and column.

Files as spreadsheets write them: UTF-8 with or without BOM, UTF-16 with a BOM ("Unicode
text"), a legacy encoding given with ``--encoding``; CRLF, LF or CR-only (Excel for Mac) line
ends; Excel's ``sep=;`` first line; trailing columns with neither a header nor values; pandas'
unnamed index column; fully empty rows (skipped and counted). The delimiter is sniffed from the
header (comma, semicolon — what spreadsheets in Indonesian locale write — tab or pipe) unless
given. Rows are numbered as a spreadsheet shows them: the header is row 1, the first data row is
row 2 (a ``sep=`` line is not shown by Excel, so it is not counted).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cloudchat_cli.core.errors import UsageError

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
MAX_FIELD = 64 * 1024  # no field of a message needs more; 10 MB fields are refused
MAX_COLUMNS = 512
SNIFF_BYTES = 64 * 1024
CHUNK = 64 * 1024
_LINE_END = re.compile(r"\r\n|\n|\r")
# str.splitlines also splits at these; a chunk without them can use it (much faster)
_OTHER_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_SEP_LINE = re.compile(r"^sep=(.)(?:\r\n|\n|\r)?$", re.IGNORECASE)
_INDEX = re.compile(r"^\s*-?[0-9]+\s*$")
LEGACY_HINT = ("if Excel or LibreOffice saved it in a Windows encoding, pass --encoding cp1252 "
               "(or --encoding latin-1); or save it as 'CSV UTF-8'")


class CsvError(UsageError):
    """The CSV cannot be used; the message names the row (and column) where possible."""


@dataclass(frozen=True)
class CsvInfo:
    path: Path
    delimiter: str
    header: list[str]  # the columns used, by name
    sha256: str
    size: int
    encoding: str = "utf-8"
    columns: tuple[int, ...] = ()  # index in the record of each header name
    width: int = 0  # fields in the header record, unnamed columns included
    sep_line: bool = False  # the file starts with Excel's sep=X line
    index_column: bool = False  # an unnamed leading column (pandas' index) is ignored
    notes: tuple[str, ...] = ()  # what was ignored, said once in the plan
    sheet: str | None = None  # a workbook's sheet (xlsxsource); then delimiter, encoding ""
    header_row: int = 1


@dataclass
class RowStats:
    """What ``rows`` skipped: fully empty rows (counted, never an error)."""

    empty: int = 0
    empty_examples: list[int] = field(default_factory=list)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise CsvError(f"{path}: no such file")
    if path.is_dir():
        raise CsvError(f"{path} is a directory, not a CSV file")


def _codec(head: bytes, path: Path, encoding: str | None) -> str:
    """The codec to read with: a byte-order mark wins, then --encoding, then UTF-8."""
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise CsvError(f"{path} is UTF-32; save it as UTF-8 (or UTF-16, Unicode text)")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"  # LibreOffice/Excel "Unicode text": the BOM says which byte order
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if encoding is None:
        return "utf-8"
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise CsvError(f"unknown --encoding {encoding!r}",
                       hint="e.g. utf-8, cp1252 (Excel on Windows), latin-1, utf-16") from None
    if not getattr(info, "_is_text_encoding", True):
        raise CsvError(f"--encoding {encoding!r} is not a text encoding")
    return info.name


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


def _text_lines(path: Path, codec: str) -> Iterator[str]:
    """The file's lines as text, each with its own line end (CRLF, LF or a lone CR).

    Decoded in chunks; a byte that does not decode raises ``UnicodeDecodeError`` only after
    every complete line before it was yielded, so the CSV reader names the right row."""
    decoder = codecs.getincrementaldecoder(codec)("strict")
    parts: list[str] = []  # the line being assembled (a 10 MB field arrives in many chunks)
    with path.open("rb") as stream:
        while True:
            chunk = stream.read(CHUNK)
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                text = exc.object[: exc.start].decode(codec, "ignore")
                yield from _split(parts, text, final=False)  # the bad line is not complete
                raise
            yield from _split(parts, text, final=not chunk)
            if not chunk:
                return


def _split(parts: list[str], text: str, *, final: bool) -> Iterator[str]:
    """Complete lines of ``parts + text``; the unfinished rest stays in ``parts``."""
    if parts and parts[-1].endswith("\r") and not text.startswith("\n"):
        yield "".join(parts)  # that CR was a line end of its own (Excel for Mac)
        parts.clear()
    if not text:
        pass
    elif not _OTHER_BREAKS.search(text):
        lines = text.splitlines(keepends=True)
        last = lines[-1]
        if last[-1] not in "\r\n" or (last[-1] == "\r" and not final):
            lines.pop()  # unfinished, or a CR that may be half of a CRLF split across chunks
        else:
            last = ""
        if lines:
            lines[0] = "".join(parts) + lines[0]
            parts.clear()
            yield from lines
        if last:
            parts.append(last)
        text = ""
    start = 0
    for match in _LINE_END.finditer(text):
        if match.end() == len(text) and text.endswith("\r") and not final:
            break  # maybe the first half of a CRLF split across two chunks
        parts.append(text[start : match.end()])
        yield "".join(parts)
        parts.clear()
        start = match.end()
    if start < len(text):
        parts.append(text[start:])
    if final and parts:
        yield "".join(parts)
        parts.clear()


def _decode_error(path: Path, codec: str, row: int, exc: UnicodeDecodeError) -> CsvError:
    byte = exc.object[exc.start]
    if codec.startswith("utf-8"):
        return CsvError(f"{path}: row {row} is not UTF-8 (byte value 0x{byte:02x})",
                        hint=LEGACY_HINT)
    return CsvError(f"{path}: row {row} cannot be read as {codec} (byte value 0x{byte:02x})",
                    hint="check --encoding, or save the file as 'CSV UTF-8'")


def open_csv(path: Path, delimiter: str | None = None, encoding: str | None = None) -> CsvInfo:
    """Check the file and its header; return what the reader needs. Reads the file once."""
    _check_path(path)
    sha, size = file_digest(path)
    if size == 0:
        raise CsvError(f"{path} is empty", hint="the first row must be a header, e.g. to,name")
    with path.open("rb") as fh:
        codec = _codec(fh.read(4), path, encoding)
    head, sep_line = _head(path, codec)
    if delimiter is None:
        delimiter = sep_line or sniff_delimiter(_first_line(head))
    elif delimiter in ("\\t", "tab"):
        delimiter = "\t"
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise CsvError(f"--delimiter must be one character, not {delimiter!r}")
    info = CsvInfo(path, delimiter, [], sha, size, codec, sep_line=sep_line is not None)
    header: list[str] | None = None
    for _row, fields in _records(info):
        header = fields
        break
    if not header or all(not h.strip() for h in header):
        raise CsvError(f"{path}: the header row is empty")
    if len(header) > MAX_COLUMNS:
        raise CsvError(f"{path}: {len(header)} columns; at most {MAX_COLUMNS} are supported")
    return _with_header(info, [h.strip() for h in header])


def _head(path: Path, codec: str) -> tuple[str, str | None]:
    """Up to SNIFF_BYTES of text after an Excel ``sep=X`` line, and X if there is one."""
    lines = _text_lines(path, codec)
    text, sep = "", None
    try:
        for i, line in enumerate(lines):
            if i == 0 and (match := _SEP_LINE.match(line)):
                sep = match.group(1)
                continue
            text += line
            if len(text) >= SNIFF_BYTES:
                break
    except UnicodeDecodeError:
        pass  # reported with its row by the reader
    finally:
        lines.close()
    return text, sep


def _with_header(info: CsvInfo, names: list[str]) -> CsvInfo:
    """Name the columns; drop pandas' unnamed index and trailing columns without a name."""
    named = [i for i, name in enumerate(names) if name]
    first, last = named[0], named[-1]
    notes = []
    index_column = first == 1 and names[0] == ""
    if index_column:
        notes.append("column 1 has no header name (an index column, as pandas writes): ignored")
    elif first != 0:
        raise CsvError(f"{info.path}: row 1, column 1 has an empty header name")
    for i in range(first, last + 1):
        if not names[i]:
            raise CsvError(f"{info.path}: row 1, column {i + 1} has an empty header name")
    if last + 1 < len(names):
        notes.append(f"{len(names) - last - 1} trailing column(s) without a header name: "
                     "ignored (they must stay empty)")
    seen: dict[str, int] = {}
    for i in named:
        if names[i] in seen:
            raise CsvError(f"{info.path}: row 1 has the column name {names[i]!r} twice "
                           f"(columns {seen[names[i]] + 1} and {i + 1})")
        seen[names[i]] = i
    return CsvInfo(info.path, info.delimiter, [names[i] for i in named], info.sha256, info.size,
                   info.encoding, tuple(named), len(names), info.sep_line, index_column,
                   tuple(notes))


def _records(info: CsvInfo) -> Iterator[tuple[int, list[str]]]:
    """Yield (record number, fields), turning every decoding/parsing problem into CsvError."""
    path = info.path
    lines = _text_lines(path, info.encoding)
    if info.sep_line:
        next(lines, None)
    reader = csv.reader(lines, delimiter=info.delimiter, strict=True)
    number = 0
    old_limit = csv.field_size_limit(MAX_FIELD)
    try:
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                raise _decode_error(path, info.encoding, number + 1, exc) from None
            except csv.Error as exc:
                message = str(exc)
                if "field larger than field limit" in message:
                    message = f"a field is larger than {MAX_FIELD // 1024} KiB"
                elif "NUL" in message or "\\x00" in message:
                    message = "contains a NUL byte (is this a binary or UTF-16 file?)"
                raise CsvError(f"{path}: row {number + 1}: {message}") from None
            number += 1
            if "\x00" in "".join(fields):
                col = next(i for i, value in enumerate(fields, 1) if "\x00" in value)
                raise CsvError(f"{path}: row {number}, column {col} contains a NUL byte")
            yield number, fields
    finally:
        csv.field_size_limit(old_limit)
        lines.close()


def rows(info: CsvInfo, stats: RowStats | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (row number, {column: value}) for every data row, streaming; fully empty rows
    are skipped and counted in ``stats``."""
    stats = stats if stats is not None else RowStats()
    records = _records(info)
    next(records, None)  # the header
    used = set(info.columns)
    # the common file: every column named, every row as wide as the header
    plain = not info.index_column and len(info.columns) == info.width
    for number, fields in records:
        if plain and len(fields) == info.width and "".join(fields).strip():
            yield number, dict(zip(info.header, fields))  # noqa: B905 (same length)
            continue
        if not "".join(fields[1:] if info.index_column else fields).strip():
            stats.empty += 1
            if len(stats.empty_examples) < 5:
                stats.empty_examples.append(number)
            continue
        if len(fields) > info.width and any(v.strip() for v in fields[info.width:]):
            raise CsvError(
                f"{info.path}: row {number} has {len(fields)} fields, the header has "
                f"{info.width}",
                hint="check for an unquoted delimiter or a missing quote in that row",
            )
        if len(fields) <= info.columns[-1]:
            raise CsvError(
                f"{info.path}: row {number} has {len(fields)} fields, the header has "
                f"{info.width}",
                hint="check for a missing delimiter or an extra quote in that row",
            )
        _check_unnamed(info, number, fields, used)
        yield number, {name: fields[i] for name, i in zip(info.header, info.columns,
                                                          strict=True)}


def _check_unnamed(info: CsvInfo, number: int, fields: list[str], used: set[int]) -> None:
    for i, value in enumerate(fields):
        if i in used:
            continue
        if i == 0 and info.index_column:
            if not _INDEX.match(value):
                raise CsvError(
                    f"{info.path}: row {number}, column 1 has no header name and holds "
                    f"{value[:20]!r}, not an index number",
                    hint="name the column in row 1, or delete it",
                )
        elif value.strip():
            raise CsvError(
                f"{info.path}: row {number}, column {i + 1} has a value but no header name",
                hint="name the column in row 1, or delete it",
            )
