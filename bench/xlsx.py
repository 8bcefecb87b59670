#!/usr/bin/env python3
"""Preflight of a big workbook next to the same rows as CSV: time and peak memory.

    python bench/xlsx.py                    # 1,000,000 rows (files made once, kept in --dir)
    python bench/xlsx.py --rows 1000 --dir /tmp/x

Three files hold the same rows (``to`` a number, ``name`` and ``order_id`` text):

* ``csv``: UTF-8 CSV;
* ``xlsx (inline)``: written by openpyxl's write-only mode, which stores text in each cell;
* ``xlsx (shared)``: text in a shared-strings table, as Excel and LibreOffice write it (every
  name and order id is distinct, so the table has 2 entries per row: the worst case).

Each preflight (open, check every row, write the plan into a journal) runs in a fresh process
so its peak RSS is its own; then the report of that journal is written as .xlsx. Peak RSS is
the process's high-water mark (ru_maxrss) minus the one before the step. CPU seconds are shown
beside wall time: on a shared machine wall time varies.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape


def row(i: int) -> tuple[int, str, str]:
    return 6281200000000 + i, f"Pelanggan {i}", f"ORD-{i:07d}"


def make_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("to,name,order_id\r\n")
        for i in range(rows):
            fh.write("{},{},{}\r\n".format(*row(i)))


def make_inline(path: Path, rows: int) -> None:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    ws = book.create_sheet("Sheet1")
    ws.append(["to", "name", "order_id"])
    for i in range(rows):
        ws.append(list(row(i)))
    book.save(path)


PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
        'package/2006/content-types"><Default Extension="rels" ContentType="application/'
        'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType='
        '"application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName='
        '"/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-'
        'officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/'
        'sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        'spreadsheetml.sharedStrings+xml"/></Types>'),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
        'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://'
        'schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target='
        '"xl/workbook.xml"/></Relationships>'),
    "xl/workbook.xml": (
        '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.'
        'org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/'
        'officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id='
        '"rId1"/></sheets></workbook>'),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
        'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://'
        'schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target='
        '"worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.'
        'org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
        '</Relationships>'),
}
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def make_shared(path: Path, rows: int) -> None:
    """The layout Excel writes: every text in xl/sharedStrings.xml, cells refer to it."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in PARTS.items():
            zf.writestr(name, body)
        with zf.open("xl/sharedStrings.xml", "w") as fh:
            fh.write(f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{MAIN}" count='
                     f'"{2 * rows + 3}" uniqueCount="{2 * rows + 3}">'.encode())
            for text in ("to", "name", "order_id"):
                fh.write(f"<si><t>{text}</t></si>".encode())
            for i in range(rows):
                _, name, order = row(i)
                fh.write(f"<si><t>{escape(name)}</t></si><si><t>{order}</t></si>".encode())
            fh.write(b"</sst>")
        with zf.open("xl/worksheets/sheet1.xml", "w") as fh:
            fh.write(f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}">'
                     f'<sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1'
                     f'</v></c><c r="C1" t="s"><v>2</v></c></row>'.encode())
            for i in range(rows):
                n = i + 2
                to, _, _ = row(i)
                fh.write(f'<row r="{n}"><c r="A{n}"><v>{to}</v></c><c r="B{n}" t="s"><v>'
                         f'{3 + 2 * i}</v></c><c r="C{n}" t="s"><v>{4 + 2 * i}</v></c></row>'
                         .encode())
            fh.write(b"</sheetData></worksheet>")


FILES = {"csv": ("data.csv", make_csv), "xlsx (inline)": ("inline.xlsx", make_inline),
         "xlsx (shared)": ("shared.xlsx", make_shared)}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step(source: Path, journal: Path, what: str) -> dict:
    """In a fresh process: preflight ``source`` into ``journal``, or write its report."""
    from cloudchat_cli.services.broadcast import report
    from cloudchat_cli.services.broadcast.journal import Journal
    from cloudchat_cli.services.broadcast.plan import BroadcastOptions, prepare, run_preflight

    opts = BroadcastOptions(csv_path=source, template="Halo {name}, pesanan {order_id}")
    before = peak_mb()
    cpu, started = time.process_time(), time.perf_counter()
    info, template = prepare(opts)
    jr = Journal(journal)
    if what == "preflight":
        plan = run_preflight(info, template, opts, jr)
        count = plan.valid
    else:
        out = journal.with_suffix(".report.xlsx")
        count = report.write(jr, report.target(out, info))
    jr.close()
    return {"rows": count, "wall": time.perf_counter() - started,
            "cpu": time.process_time() - cpu, "rss": peak_mb() - before}


def measure(rows: int, folder: Path, reports: bool = True) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for label, (name, make) in FILES.items():
        path = folder / f"{rows}-{name}"
        if not path.exists():  # made once: a million-row workbook takes a while to write
            started = time.perf_counter()
            tmp = path.with_name(f".{path.name}.tmp")
            make(tmp, rows)
            tmp.rename(path)
            print(f"made {path} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            journal = Path(tmp) / "j.sqlite3"
            for what in ("preflight", "report .xlsx") if reports else ("preflight",):
                proc = subprocess.run([sys.executable, __file__, "--step", what, str(path),
                                       str(journal)], capture_output=True, text=True, check=True)
                result = json.loads(proc.stdout)
                assert result["rows"] == rows, result
                results.append({"input": label, "step": what, "size": path.stat().st_size,
                                **result})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "cc-xlsx")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--step", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        what, source, journal = args.step
        print(json.dumps(step(Path(source), Path(journal), what)))
        return
    print(f"| input ({args.rows:,} rows) | file MB | step | wall s | CPU s | rows/s (CPU) "
          "| peak RSS MB |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in measure(args.rows, args.dir, not args.no_report):
        print(f"| {r['input']} | {r['size'] / 1e6:.1f} | {r['step']} | {r['wall']:.1f} | "
              f"{r['cpu']:.1f} | {r['rows'] / max(r['cpu'], 1e-9):,.0f} | {r['rss']:.0f} |")


if __name__ == "__main__":
    main()
