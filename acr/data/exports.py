"""Business exports as tables of text: CSV/TSV, JSONL or a SQL dump of INSERT statements.

Every value comes back as a string or None (an empty CSV field, JSON null, SQL NULL), whatever
type the format gave it, so one export normalises to the same manifests in any format: the asset
id 7 is "7" in a CSV, as a JSON number and as an unquoted SQL literal. A ``.gz`` suffix is read
through gzip.

No SQL library is used: sqlglot and sqlparse are not acr dependencies (nor installed), and the
data in a dump are literals, which a small tokenizer reads exactly: quoted strings ('' and
backslash escapes, as mysqldump writes them), numbers, NULL, TRUE/FALSE. Comments and every other
statement are skipped; ``CREATE TABLE`` only names the columns of INSERTs that list none
(mysqldump's and pg_dump --inserts' default).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from acr.data.manifests import ManifestError

FORMATS = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".sql")
_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>--[^\n]*|\#[^\n]*|/\*.*?\*/)
    | (?P<string>'(?:[^'\\]++|\\.|'')*+')
    | (?P<quoted>"(?:[^"\\]++|\\.|"")*+"|`(?:[^`]++|``)*+`)
    | (?P<dollar>\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$)
    | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<word>[A-Za-z_][\w$]*)
    | (?P<symbol>[^'"`])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
_INSERT_MODIFIERS = {"LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"}
_NOT_COLUMNS = {"PRIMARY", "KEY", "UNIQUE", "CONSTRAINT", "INDEX", "FOREIGN", "CHECK", "FULLTEXT"}


def read_export(path: Path, table: str | None = None) -> pd.DataFrame:
    """The export's rows, one column per field, every value a string or None."""
    if not path.is_file():
        raise ManifestError(path, "file does not exist")
    suffixes = [suffix.lower() for suffix in path.suffixes]
    compressed = suffixes[-1:] == [".gz"]
    kind = (suffixes[-2:-1] if compressed else suffixes[-1:]) or [""]
    if kind[0] not in FORMATS:
        raise ManifestError(path, f"unknown export format; use one of {FORMATS} (or .gz of one)")
    opener = gzip.open if compressed else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        text = handle.read()
    if kind[0] in (".csv", ".tsv"):
        rows = _csv_rows(text, path, "\t" if kind[0] == ".tsv" else ",")
    elif kind[0] == ".sql":
        rows = read_sql_dump(text, path, table)
    else:
        rows = _json_rows(text, path)
    if not rows:
        raise ManifestError(path, "export holds no rows")
    return pd.DataFrame(rows, dtype=object).astype(object).where(lambda t: t.notna(), None)


def _csv_rows(text: str, path: Path, delimiter: str) -> list[dict[str, str | None]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = reader.fieldnames or []
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise ManifestError(path, f"header repeats column(s) {duplicated}")
    rows = []
    for row in reader:
        if None in row:
            raise ManifestError(path, f"line {reader.line_num}: more fields than the header")
        rows.append({key: value if value != "" else None for key, value in row.items()})
    return rows


def _json_rows(text: str, path: Path) -> list[dict[str, str | None]]:
    """JSON lines, or one JSON array of objects."""
    try:
        if text.lstrip().startswith("["):
            records = list(enumerate(json.loads(text), start=1))
        else:
            records = [
                (number, json.loads(line))
                for number, line in enumerate(text.splitlines(), start=1)
                if line.strip()
            ]
    except json.JSONDecodeError as error:
        raise ManifestError(path, f"not valid JSON ({error})") from error
    rows = []
    for number, record in records:
        if not isinstance(record, dict):
            raise ManifestError(path, f"record {number} is not an object: {record!r:.60}")
        rows.append({key: _text(value) for key, value in record.items()})
    return rows


def _text(value: Any) -> str | None:
    """A typed value as the text a CSV would hold (bools as SQL writes them: true/false)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


# -- SQL dumps --------------------------------------------------------------------------------
Token = tuple[str, str, int]  # (kind, text, position in the dump)


def read_sql_dump(text: str, path: Path, table: str | None = None) -> list[dict[str, str | None]]:
    """The rows that the dump's INSERT statements put into ``table`` (default: the only one)."""
    inserted: dict[str, list[dict[str, str | None]]] = {}
    declared: dict[str, list[str]] = {}
    for tokens in _statements(text, path):
        first = tokens[0][1].upper()
        words = [token[1].upper() for token in tokens[:8] if token[0] == "word"]
        if first in ("INSERT", "REPLACE"):
            name, rows = _insert(tokens, declared, text, path)
            inserted.setdefault(name, []).extend(rows)
        elif first == "CREATE" and "TABLE" in words:
            name, columns = _create_table(tokens)
            if columns:
                declared[name.casefold()] = columns
        elif first == "COPY" and "STDIN" in words:
            raise ManifestError(
                path,
                f"line {_line(text, tokens[0][2])}: COPY ... FROM stdin data are not read;"
                " dump with INSERT statements (pg_dump --column-inserts)",
            )
    if not inserted:
        raise ManifestError(path, "no INSERT INTO statement in the dump")
    if table is None:
        if len(inserted) > 1:
            raise ManifestError(
                path, f"rows for tables {sorted(inserted)}; name one with the mapping's table key"
            )
        return next(iter(inserted.values()))
    chosen = [
        name
        for name in inserted
        if table.casefold() in (name.casefold(), name.rsplit(".", 1)[-1].casefold())
    ]
    if len(chosen) != 1:
        raise ManifestError(
            path, f"mapping table={table!r}: the dump inserts into {sorted(inserted)}"
        )
    return inserted[chosen[0]]


def _statements(text: str, path: Path) -> list[list[Token]]:
    """Tokens of each statement, split at semicolons outside strings and comments."""
    statements, current, position = [], [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ManifestError(
                path,
                f"line {_line(text, position)}: unterminated quote {text[position:][:40]!r}",
            )
        kind, position = match.lastgroup, match.end()
        if kind in ("space", "comment"):
            continue
        if kind == "symbol" and match.group() == ";":
            if current:
                statements.append(current)
            current = []
            continue
        current.append((kind, match.group(), match.start()))
    if current:
        statements.append(current)
    return statements


def _insert(
    tokens: list[Token], declared: dict[str, list[str]], text: str, path: Path
) -> tuple[str, list[dict[str, str | None]]]:
    """``INSERT [IGNORE] INTO name [(columns)] VALUES (...), (...)``: (table name, rows)."""
    index = 1
    while index < len(tokens) and tokens[index][1].upper() in _INSERT_MODIFIERS:
        index += 1
    name, index = _name(tokens, index)
    columns = None
    if _is(tokens, index, "("):
        columns, index = [], index + 1
        while not _is(tokens, index, ")"):
            if tokens[index][1] != ",":
                columns.append(_identifier(tokens[index]))
            index += 1
        index += 1
    where = f"line {_line(text, tokens[0][2])}: INSERT INTO {name}"
    if columns is None:
        columns = declared.get(name.casefold())
        if columns is None:
            raise ManifestError(path, f"{where} lists no columns and no CREATE TABLE names them")
    if index >= len(tokens) or tokens[index][1].upper() not in ("VALUES", "VALUE"):
        raise ManifestError(path, f"{where}: expected VALUES (INSERT ... SELECT is not read)")
    rows, index = [], index + 1
    while _is(tokens, index, "("):
        values, index = _row(tokens, index + 1, text, path)
        if len(values) != len(columns):
            raise ManifestError(
                path,
                f"line {_line(text, tokens[index - 1][2])}: {len(values)} values for"
                f" {len(columns)} columns of {name}",
            )
        rows.append(dict(zip(columns, values)))
        if not _is(tokens, index, ","):
            break
        index += 1
    return name, rows


def _row(tokens: list[Token], index: int, text: str, path: Path) -> tuple[list[str | None], int]:
    """The literals of one ``(...)`` tuple; returns them and the index after its ``)``."""
    values = []
    while True:
        if index >= len(tokens):
            raise ManifestError(path, f"line {_line(text, tokens[-1][2])}: unclosed VALUES tuple")
        kind, value, position = tokens[index]
        if kind == "word" and _kind(tokens, index + 1) in ("string", "quoted"):
            index += 1  # a charset or escape prefix: _utf8mb4'x', E'x', N'x'
            kind, value, position = tokens[index]
        sign = ""
        if value in ("-", "+") and _kind(tokens, index + 1) == "number":
            sign, index = "-" if value == "-" else "", index + 1
            kind, value, position = tokens[index]
        if kind in ("string", "quoted"):
            values.append(_unquote(value))
        elif kind == "number":
            values.append(sign + value)
        elif kind == "word" and value.upper() in ("NULL", "TRUE", "FALSE"):
            values.append(None if value.upper() == "NULL" else value.lower())
        else:
            raise ManifestError(
                path,
                f"line {_line(text, position)}: {value!r} is not a literal"
                " (strings, numbers, NULL, TRUE/FALSE)",
            )
        index += 1
        while _is(tokens, index, ":") and _is(tokens, index + 1, ":"):  # a PostgreSQL ::cast
            index += 3
        if _is(tokens, index, ")"):
            return values, index + 1
        if not _is(tokens, index, ","):
            last = tokens[min(index, len(tokens) - 1)]
            raise ManifestError(path, f"line {_line(text, last[2])}: expected , or ) in VALUES")
        index += 1


def _create_table(tokens: list[Token]) -> tuple[str, list[str]]:
    """``CREATE TABLE [IF NOT EXISTS] name (column type, ..., PRIMARY KEY (...))``."""
    index = next(i for i, token in enumerate(tokens) if token[1].upper() == "TABLE") + 1
    while index < len(tokens) and tokens[index][1].upper() in ("IF", "NOT", "EXISTS"):
        index += 1
    name, index = _name(tokens, index)
    columns, depth, item_start = [], 0, True
    for kind, value, _ in tokens[index:]:
        if value == "(":
            depth += 1
        elif value == ")":
            depth -= 1
            if depth == 0:
                break
        elif value == "," and depth == 1:
            item_start = True
            continue
        if depth == 1 and item_start and value != "(":
            item_start = False
            if kind in ("word", "quoted") and value.upper() not in _NOT_COLUMNS:
                columns.append(_identifier((kind, value, 0)))
    return name, columns


def _name(tokens: list[Token], index: int) -> tuple[str, int]:
    """A possibly qualified name, ``schema.table``, without its quotes."""
    parts = [_identifier(tokens[index])]
    while _is(tokens, index + 1, ".") and index + 2 < len(tokens):
        parts.append(_identifier(tokens[index + 2]))
        index += 2
    return ".".join(parts), index + 1


def _identifier(token: Token) -> str:
    kind, value, _ = token
    return _unquote(value) if kind == "quoted" else value


def _unquote(literal: str) -> str:
    """The text of a quoted literal: doubled quotes and backslash escapes resolved."""
    quote, body = literal[0], literal[1:-1]
    if quote == "`":
        return body.replace("``", "`")
    return re.sub(
        r"\\(.)|" + quote * 2,
        lambda match: _ESCAPES.get(match[1], match[1]) if match[1] is not None else quote,
        body,
        flags=re.DOTALL,
    )


def _is(tokens: list[Token], index: int, symbol: str) -> bool:
    return index < len(tokens) and tokens[index][0] == "symbol" and tokens[index][1] == symbol


def _kind(tokens: list[Token], index: int) -> str | None:
    return tokens[index][0] if index < len(tokens) else None


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1
