"""CSV files source: chunked reads, typed columns, rejected rows with line numbers, the import-dir jail."""

from __future__ import annotations

import gzip
import os
import re
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from aggregator.dataplane import Batch, FieldType, RejectedRows, StateCheckpoint, StreamSchema
from apps.connectors.base import ConnectorError
from apps.connectors.plugins.csv_file import CsvFileSource
from tests.connectors.conftest import TEST_WORKSPACE_ID, bound

source = CsvFileSource()


def _read(config: dict[str, Any], state: dict[str, Any] | None = None) -> tuple[StreamSchema, list[Any]]:
    cfg = bound(source, config)
    [stream] = source.discover(cfg)
    return stream, list(source.read(cfg, stream, state))


def _batches(items: list[Any]) -> list[Batch]:
    return [i for i in items if isinstance(i, Batch)]


def _rejected(items: list[Any]) -> list[dict[str, Any]]:
    return [r.to_dict() for i in items if isinstance(i, RejectedRows) for r in i.rows]


def test_reads_in_chunks_of_chunk_size_with_inferred_types(import_dir: Path) -> None:
    lines = ["id,price,day,at,flag,label"]
    lines += [
        f"{i},{i / 2},2024-01-{i % 28 + 1:02d},2024-01-01T00:00:{i % 60:02d}Z,{i % 2 == 0},n{i}"
        for i in range(10_000)
    ]
    (import_dir / "big.csv").write_text("\n".join(lines) + "\n")

    stream, items = _read({"path": "big.csv", "chunk_size": 3000})

    assert [(f.name, f.type) for f in stream.fields] == [
        ("id", FieldType.INTEGER),
        ("price", FieldType.NUMBER),
        ("day", FieldType.DATE),
        ("at", FieldType.DATETIME),
        ("flag", FieldType.BOOLEAN),
        ("label", FieldType.STRING),
    ]
    batches = _batches(items)
    assert [b.num_rows for b in batches] == [3000, 3000, 3000, 1000]
    assert sum(b.num_rows for b in batches) == 10_000
    last = batches[-1].table.to_pylist()[-1]
    assert (
        last["id"] == 9999 and last["price"] == 4999.5 and last["flag"] is False and last["label"] == "n9999"
    )
    assert str(batches[0].frame.dtypes["id"]) == "int64[pyarrow]"
    assert isinstance(items[-1], StateCheckpoint)
    assert _rejected(items) == []


def test_malformed_rows_are_rejected_with_their_line_numbers(import_dir: Path) -> None:
    (import_dir / "people.csv").write_text(
        "id,name,score\n"
        "1,alice,1.5\n"
        "2,bob\n"  # line 3: too few columns
        "3,carol,abc\n"  # line 4: not a number
        "\n"  # line 5: blank, skipped
        '4,"dave\nthe second",4.5\n'  # lines 6-7: a quoted line break is one record
        "5,eve,5.5,extra\n"  # line 8: too many columns
        "6,frank,6e1\n"
    )
    _, items = _read({"path": "people.csv", "column_types": {"score": "number"}, "multiline_values": True})

    rows = [r for b in _batches(items) for r in b.table.to_pylist()]
    assert rows == [
        {"id": 1, "name": "alice", "score": 1.5},
        {"id": 4, "name": "dave\nthe second", "score": 4.5},
        {"id": 6, "name": "frank", "score": 60.0},
    ]
    assert _rejected(items) == [
        {
            "line": 3,
            "row": None,
            "reason": "expected 3 columns, found 2",
            "raw": "2,bob",
            "source": "people.csv",
        },
        {
            "line": 8,
            "row": None,
            "reason": "expected 3 columns, found 4",
            "raw": "5,eve,5.5,extra",
            "source": "people.csv",
        },
        {
            "line": 4,
            "row": None,
            "reason": "score: 'abc' is not a valid number",
            "raw": {"id": "3", "name": "carol", "score": "abc"},
            "source": "people.csv",
        },
    ]


def test_sniffs_delimiter_encoding_and_headerless_files(import_dir: Path) -> None:
    (import_dir / "latin.csv").write_bytes("1;Zoë;2,5\n2;Ærø;3\n".encode("cp1252"))
    stream, items = _read({"path": "latin.csv"})
    assert stream.field_names == ["f0", "f1", "f2"]
    assert [r for b in _batches(items) for r in b.table.to_pylist()] == [
        {"f0": 1, "f1": "Zoë", "f2": "2,5"},
        {"f0": 2, "f1": "Ærø", "f2": "3"},
    ]


def test_tab_separated_files_with_an_explicit_tab_delimiter(import_dir: Path) -> None:
    (import_dir / "data.tsv").write_text("a\tb\n1\tx y\n")
    stream, items = _read({"path": "data.tsv", "delimiter": "\t"})
    assert stream.name == "data"
    assert [r for b in _batches(items) for r in b.table.to_pylist()] == [{"a": 1, "b": "x y"}]


def test_overrides_win_over_detection(import_dir: Path) -> None:
    (import_dir / "pipes.txt").write_text("a|b\n1|x\n")
    stream, items = _read({"path": "pipes.txt", "delimiter": "|", "header": False, "stream_name": "p"})
    assert stream.name == "p"
    assert [r for b in _batches(items) for r in b.table.to_pylist()] == [
        {"f0": "a", "f1": "b"},
        {"f0": "1", "f1": "x"},
    ]


def test_gzip_files_and_globs_form_one_stream(import_dir: Path) -> None:
    (import_dir / "2024").mkdir()
    for month in (1, 2):
        with gzip.open(import_dir / "2024" / f"m{month}.csv.gz", "wt") as fh:
            fh.write(f"month,value\n{month},10\n{month},20\n")
    stream, items = _read({"path": "2024/*.csv.gz", "stream_name": "months"})
    assert stream.name == "months"
    assert [r["month"] for b in _batches(items) for r in b.table.to_pylist()] == [1, 1, 2, 2]
    checkpoints = [i for i in items if isinstance(i, StateCheckpoint)]
    assert len(checkpoints) == 2
    assert set(checkpoints[-1].state["files"]) == {"2024/m1.csv.gz", "2024/m2.csv.gz"}


def test_incremental_state_skips_files_already_read(import_dir: Path) -> None:
    (import_dir / "a.csv").write_text("x\n1\n")
    (import_dir / "b.csv").write_text("x\n2\n")
    cfg = bound(source, {"path": "*.csv", "stream_name": "xs"})
    [stream] = source.discover(cfg)
    first = list(source.read(cfg, stream, None))
    state = [i for i in first if isinstance(i, StateCheckpoint)][-1].state

    (import_dir / "c.csv").write_text("x\n3\n")
    second = list(source.read(cfg, stream, state))

    assert [r["x"] for b in _batches(second) for r in b.table.to_pylist()] == [3]


def test_state_kept_before_uploads_moved_into_the_workspace_area_still_counts(import_dir: Path) -> None:
    (import_dir / "uploads").mkdir()
    (import_dir / "uploads" / "u1.csv").write_text("x\n1\n")
    cfg = bound(source, {"path": "uploads/*.csv", "stream_name": "xs"})
    [stream] = source.discover(cfg)
    first = list(source.read(cfg, stream, None))
    [fingerprint] = [i for i in first if isinstance(i, StateCheckpoint)][-1].state["files"].values()
    # What the state called the file when it was uploads/<workspace id>/u1.csv under the import directory.
    legacy = {"files": {f"uploads/{TEST_WORKSPACE_ID}/u1.csv": fingerprint}}

    (import_dir / "uploads" / "u2.csv").write_text("x\n2\n")
    second = list(source.read(cfg, stream, legacy))

    assert [r["x"] for b in _batches(second) for r in b.table.to_pylist()] == [2]
    assert [i for i in second if isinstance(i, StateCheckpoint)][-1].state["files"] == {
        "uploads/u1.csv": fingerprint,
        "uploads/u2.csv": ANY_FINGERPRINT,
    }


class _AnyFingerprint:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict) and set(other) == {"size", "mtime_ns"}


ANY_FINGERPRINT = _AnyFingerprint()


@pytest.mark.parametrize("path", ["../outside.csv", "/etc/passwd", "sub/../../outside.csv"])
def test_paths_leaving_the_import_directory_are_refused_by_validation(path: str, import_dir: Path) -> None:
    with pytest.raises(ConnectorError) as excinfo:
        bound(source, {"path": path})
    assert excinfo.value.field == "path"


def test_a_symlink_out_of_the_import_directory_is_refused(import_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("token\nhunter2\n")
    os.symlink(secret, import_dir / "innocent.csv")
    (import_dir / "linked").symlink_to(tmp_path, target_is_directory=True)
    for path in ("innocent.csv", "linked/secret.csv", "*.csv"):
        cfg = bound(source, {"path": path})
        with pytest.raises(ConnectorError) as excinfo:
            source.discover(cfg)
        assert excinfo.value.field == "path"
        assert (
            excinfo.value.message
            == f"{path!r} leads outside this workspace's files (the import directory's workspaces/7/)."
        )
        assert str(tmp_path) not in excinfo.value.message


def test_no_matching_file_is_a_clear_error(import_dir: Path) -> None:
    with pytest.raises(ConnectorError, match=re.escape("No file matches 'missing/*.csv'")):
        source.check(bound(source, {"path": "missing/*.csv"}))


def test_a_column_of_the_wrong_type_fails_with_a_message_naming_it(import_dir: Path) -> None:
    (import_dir / "words.csv").write_text("n\n" + "\n".join(f"w{i}" for i in range(3000)) + "\n")
    cfg = bound(source, {"path": "words.csv", "column_types": {"n": "integer"}})
    [stream] = source.discover(cfg)
    with pytest.raises(ConnectorError, match="Column 'n' does not hold integer values"):
        list(source.read(cfg, stream, None))


# --- zip archives ---------------------------------------------------------------------------------------


def _zip(path: Path, entries: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")


def test_a_zip_of_two_csvs_reads_both_entries_as_one_stream(import_dir: Path) -> None:
    _zip(
        import_dir / "flights.zip",
        {
            "2013/jan.csv": b"id,carrier,delay\n1,UA,2.5\n2,AA,x\n",
            "2013/feb.csv": b"id,carrier,delay\n3,DL,-1\n",
            "README.md": b"not a csv, not read",
        },
    )
    config = {"path": "flights.zip", "column_types": {"delay": "number"}}
    assert source.check(bound(source, config)).message == "1 file matches (2 CSV entries in zip archives)."

    stream, items = _read(config)
    assert stream.name == "flights"
    assert [(f.name, f.type) for f in stream.fields] == [
        ("id", FieldType.INTEGER),
        ("carrier", FieldType.STRING),
        ("delay", FieldType.NUMBER),
    ]
    rows = [row for b in _batches(items) for row in b.table.to_pylist()]
    assert rows == [
        {"id": 1, "carrier": "UA", "delay": 2.5},
        {"id": 3, "carrier": "DL", "delay": -1.0},
    ]
    assert _rejected(items) == [
        {
            "line": 3,
            "row": None,
            "reason": "delay: 'x' is not a valid number",
            "raw": {"id": "2", "carrier": "AA", "delay": "x"},
            "source": "flights.zip!2013/jan.csv",
        }
    ]
    checkpoints = [i.state for i in items if isinstance(i, StateCheckpoint)]
    assert [sorted(c["files"]) for c in checkpoints] == [
        ["flights.zip!2013/jan.csv"],
        ["flights.zip!2013/feb.csv", "flights.zip!2013/jan.csv"],
    ]

    # Incremental: the same archive again reads nothing; a changed archive re-reads its entries.
    _, again = _read(config, checkpoints[-1])
    assert _batches(again) == []
    _zip(import_dir / "flights.zip", {"2013/mar.csv": b"id,carrier,delay\n4,B6,7\n"})
    os.utime(import_dir / "flights.zip", ns=(1, 1))
    _, changed = _read(config, checkpoints[-1])
    assert [row for b in _batches(changed) for row in b.table.to_pylist()] == [
        {"id": 4, "carrier": "B6", "delay": 7.0}
    ]


@pytest.mark.parametrize(
    ("entries", "symlinks", "message"),
    [
        ({"../escape.csv": b"a\n1\n"}, (), "zip entry '../escape.csv' escapes the archive."),
        ({"/etc/cron.d/x.csv": b"a\n1\n"}, (), "zip entry '/etc/cron.d/x.csv' escapes the archive."),
        ({"ok.csv": b"a\n1\n"}, ("link.csv",), "zip entry 'link.csv' is a symbolic link."),
    ],
)
def test_a_zip_with_an_unsafe_entry_is_refused_before_anything_is_read(
    import_dir: Path, entries: dict[str, bytes], symlinks: tuple[str, ...], message: str
) -> None:
    _zip(import_dir / "bad.zip", {"first.csv": b"a\n1\n", **entries}, symlinks=symlinks)
    cfg = bound(source, {"path": "bad.zip"})
    for operation in (source.check, source.discover):
        with pytest.raises(ConnectorError) as error:
            operation(cfg)
        assert (error.value.message, error.value.field) == (message, "path")
    stream = StreamSchema.from_dict({"name": "bad", "fields": [{"name": "a", "type": "integer"}]})
    with pytest.raises(ConnectorError) as error:
        list(source.read(cfg, stream, None))
    assert error.value.message == message
    assert sorted(p.name for p in import_dir.iterdir()) == ["bad.zip"]  # nothing was extracted


def test_a_zip_that_decompresses_past_the_limit_is_stopped(import_dir: Path, settings: Any) -> None:
    settings.AGGREGATOR_ARCHIVE_MAX_BYTES = 50_000
    _zip(import_dir / "big.zip", {"big.csv": b"id\n" + b"1\n" * 40_000})
    with pytest.raises(ConnectorError) as error:
        _read({"path": "big.zip"})
    assert error.value.field == "path"
    assert error.value.message == "big.zip declares 80003 decompressed bytes (the limit is 50000)."


def test_a_zip_without_csv_entries_is_a_clear_error(import_dir: Path) -> None:
    _zip(import_dir / "docs.zip", {"README.md": b"hello"})
    with pytest.raises(ConnectorError) as error:
        source.check(bound(source, {"path": "docs.zip"}))
    assert (error.value.message, error.value.field) == ("docs.zip holds no .csv / .tsv / .txt entry.", "path")


@pytest.mark.parametrize("container", ["plain", "gzip", "zip"])
def test_a_bad_value_after_clean_blocks_rejects_exactly_its_row(
    container: str, import_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Several 1 MB blocks of clean rows are read with the stream's types (the fast path); the bad value in a
    # later block sends the rest of the file down the text-and-cast path, which must reject exactly that row
    # with its line, yield every other row once and in order, and still collect the short rows on both sides.
    lines = ["id,price,flag,label"]
    expected: list[int] = []
    for i in range(150_000):
        if i == 500:
            lines.append("short,row")  # before the bad value, in the part read by the fast path
        if i == 140_000:
            lines.append("1,2,3,4,5")  # after it
        price = "abc" if i == 120_000 else f"{i / 4}"
        flag = "maybe" if i == 145_000 else str(i % 2 == 0).lower()
        lines.append(f"{i},{price},{flag},n{i}")
        if i not in (120_000, 145_000):
            expected.append(i)
    data = ("\n".join(lines) + "\n").encode()
    if container == "plain":
        (import_dir / "late.csv").write_bytes(data)
        path, label = "late.csv", "late.csv"
    elif container == "gzip":
        (import_dir / "late.csv.gz").write_bytes(gzip.compress(data))
        path, label = "late.csv.gz", "late.csv.gz"
    else:
        _zip(import_dir / "late.zip", {"late.csv": data})
        path, label = "late.zip", "late.zip!late.csv"

    read_types: list[set[str]] = []
    original_open = CsvFileSource._open

    def spy(self: CsvFileSource, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("column_types") is not None:
            read_types.append({str(t) for t in kwargs["column_types"].values()})
        return original_open(self, *args, **kwargs)

    monkeypatch.setattr(CsvFileSource, "_open", spy)
    config = {"path": path, "column_types": {"price": "number", "flag": "boolean"}, "chunk_size": 40_000}
    _, items = _read(config)

    # The fast path first (numbers and booleans converted by the reader), then the text path.
    assert read_types == [{"int64", "double", "bool", "string"}, {"string"}]
    batches = _batches(items)
    assert [b.num_rows for b in batches] == [40_000, 40_000, 40_000, 29_998]
    rows = [r for b in batches for r in b.table.to_pylist()]
    assert [r["id"] for r in rows] == expected
    assert rows[-1] == {"id": 149_999, "price": 149_999 / 4, "flag": False, "label": "n149999"}
    assert str(batches[-1].table.schema.field("price").type) == "double"
    assert _rejected(items) == [
        {
            "line": 502,
            "row": None,
            "reason": "expected 4 columns, found 2",
            "raw": "short,row",
            "source": label,
        },
        {
            "line": 140_003,
            "row": None,
            "reason": "expected 4 columns, found 5",
            "raw": "1,2,3,4,5",
            "source": label,
        },
        {
            "line": 120_003,
            "row": None,
            "reason": "price: 'abc' is not a valid number",
            "raw": {"id": "120000", "price": "abc", "flag": "true", "label": "n120000"},
            "source": label,
        },
        {
            "line": 145_004,
            "row": None,
            "reason": "flag: 'maybe' is not a valid boolean",
            "raw": {"id": "145000", "price": "36250.0", "flag": "maybe", "label": "n145000"},
            "source": label,
        },
    ]
