"""acr.data.exports: the SQL dump reader, on the statements a mysqldump or pg_dump holds."""

from pathlib import Path

import pytest

from acr.data.exports import read_sql_dump
from acr.data.manifests import ManifestError


def test_sql_dump_reader_handles_quotes_nulls_numbers_and_other_statements() -> None:
    dump = r"""
    -- comment; with a semicolon
    /*!40101 SET @OLD_SQL_MODE=@@SQL_MODE */;
    CREATE TABLE `t` (`id` int, `name` varchar(9) DEFAULT ',', `price` decimal(10,2),
      KEY `k` (`name`));
    INSERT INTO `t` VALUES (1,'it''s, ok',-2.5),(2,'back\\slash \'q\'\n',NULL);
    INSERT INTO public.other (a) VALUES (TRUE);
    CREATE FUNCTION f() AS $body$ SELECT 'x; $$' $body$;
    INSERT INTO t (price, id, name) VALUES (1e3, 3, _utf8mb4'semi;colon');
    """
    rows = read_sql_dump(dump, Path("dump.sql"), "t")
    assert rows == [
        {"id": "1", "name": "it's, ok", "price": "-2.5"},
        {"id": "2", "name": "back\\slash 'q'\n", "price": None},
        {"price": "1e3", "id": "3", "name": "semi;colon"},
    ]
    assert read_sql_dump(dump, Path("dump.sql"), "other") == [{"a": "true"}]
    with pytest.raises(ManifestError, match=r"dump.sql: rows for tables \['other', 't'\]"):
        read_sql_dump(dump.replace("public.", ""), Path("dump.sql"))
    with pytest.raises(ManifestError, match="line 1: unterminated quote"):
        read_sql_dump("INSERT INTO t (a) VALUES ('x);", Path("dump.sql"))
    with pytest.raises(ManifestError, match="line 2: 1 values for 2 columns of t"):
        read_sql_dump("INSERT INTO t (a, b) VALUES\n(1);", Path("dump.sql"))
    with pytest.raises(ManifestError, match="'now' is not a literal"):
        read_sql_dump("INSERT INTO t (a) VALUES (now());", Path("dump.sql"))
