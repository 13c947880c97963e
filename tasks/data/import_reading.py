"""Reading a feed file: the header checked up front, then the rows in chunks of fixed width.

Step 1 of the import (`tasks.data.importing`): a row with the wrong number of fields is
quarantined as it stands.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from pdca.errors import UserError
from tasks.data.quarantine import Rejected, csv_line


def open_feed_file(path: Path, expected: tuple[str, ...], delimiter: str = ",") -> io.TextIOBase:
    """Open `path` positioned after its header; refuse what cannot be a feed of this shape.

    Checked up front, before anything is written: the file exists, is not empty, starts
    as UTF-8 text, uses the expected delimiter and has exactly the expected columns.
    """
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    head = path.open("rb").read(65536)
    if not head.strip():
        raise UserError(f"{path}: line 1: empty file, expected a header row")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not just a character cut at the sample's end
            line = head[: error.start].count(b"\n") + 1
            raise UserError(
                f"{path}: line {line}: not UTF-8 text (byte 0x{head[error.start]:02x}); "
                "save the file as UTF-8"
            ) from None
    handle = path.open(encoding="utf-8-sig", errors="replace", newline="")
    header = next(csv.reader([handle.readline()], delimiter=delimiter), [])
    header = [name.strip() for name in header]
    if len(header) == 1 and len(expected) > 1:
        other = next((d for d in ";\t|," if d != delimiter and d in header[0]), None)
        if other:
            handle.close()
            raise UserError(
                f"{path}: line 1: fields are separated by {other!r}, expected {delimiter!r}"
            )
    missing = [name for name in expected if name not in header]
    unknown = [name for name in header if name not in expected]
    if missing or unknown:
        handle.close()
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(unknown)}")
        raise UserError(f"{path}: line 1: {'; '.join(parts)}")
    if len(set(header)) != len(header):
        handle.close()
        raise UserError(f"{path}: line 1: a column name appears twice")
    handle.header = header  # type: ignore[attr-defined]
    return handle


READ_LIMIT = 4 * 1024 * 1024
"""Most characters the CSV reader takes in one field. Fields above the feed's own limit
(`tasks.common.bounds.Bounds.max_field_chars`) are quarantined with their field name when
they are parsed; a field above this one (an unterminated quote swallowing the file) cannot
be read as a row at all, and is quarantined as a whole row."""


def read_chunks(
    handle: io.TextIOBase, width: int, chunk_rows: int, delimiter: str = ","
) -> Iterator[tuple[list[list[str]], list[int], list[Rejected]]]:
    """Rows of `width` fields with their line numbers, `chunk_rows` at a time.

    A row with another number of fields (a blank line included), or a field the reader
    cannot hold, is rejected here: its columns cannot be trusted to mean what the header
    says. The reader goes on with the next line, so one such row never stops an import.
    """
    csv.field_size_limit(READ_LIMIT)
    reader = csv.reader(handle, delimiter=delimiter)
    while True:
        rows: list[list[str]] = []
        lines: list[int] = []
        rejected: list[Rejected] = []
        for _ in range(chunk_rows):
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                reason = f"unreadable row: {error}"
                rejected.append(Rejected(reader.line_num + 1, "(row)", reason, ""))
                continue
            if len(row) == width:
                rows.append(row)
                lines.append(reader.line_num + 1)  # the header was line 1
            else:
                reason = "empty line" if not row else f"expected {width} fields, found {len(row)}"
                rejected.append(
                    Rejected(reader.line_num + 1, "(row)", reason, csv_line(row, delimiter))
                )
        if not rows and not rejected:
            return
        yield rows, lines, rejected
