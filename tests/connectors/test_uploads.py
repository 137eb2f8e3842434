"""Upload safety: server-generated names, the size limit enforced while streaming, content sniffing, and zip /
gzip archives checked (traversal, symlinks, entry count, decompression bombs, lying headers)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import re
import sqlite3
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from aggregator.dataplane import Batch
from apps.connectors.base import ConnectorError
from apps.connectors.plugins.csv_file import CsvFileSource
from apps.connectors.plugins.json_file import JsonFileSource
from apps.connectors.plugins.parquet_file import ParquetFileSource
from apps.connectors.uploads import UploadRefused, upload_store
from tests.connectors.conftest import bound

WORKSPACE = 7


@pytest.fixture
def import_root(import_dir: Path) -> Path:
    """The import area of workspace WORKSPACE: what the stored paths are relative to."""
    assert import_dir.name == str(WORKSPACE)
    return import_dir


def upload_dir(root: Path) -> Path:
    return root / "uploads"


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def zip_bytes(entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def store(data: bytes, name: str) -> Any:
    return upload_store(workspace_id=WORKSPACE, file=io.BytesIO(data), file_name=name)


# --- storing ------------------------------------------------------------------------------------------


def test_a_csv_upload_is_stored_under_a_server_name_with_its_digest(import_root: Path) -> None:
    data = b"id,name\n1,ann\n2,bob\n"
    upload = SimpleUploadedFile("People List.CSV", data, content_type="text/csv")
    stored = upload_store(workspace_id=WORKSPACE, file=upload, file_name=upload.name)
    assert stored.format == "csv"
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.original_name == "People List.CSV"
    assert stored.path.startswith("uploads/") and stored.path.endswith(".csv")
    assert len(Path(stored.path).stem) == 32  # a uuid4 hex, nothing of the client's name
    assert (import_root / stored.path).read_bytes() == data
    assert files_in(upload_dir(import_root)) == [Path(stored.path).name]


def test_a_traversal_client_name_is_saved_inside_the_upload_dir(import_root: Path, tmp_path: Path) -> None:
    stored = store(b"a,b\n1,2\n", "../../x.csv")
    assert stored.original_name == "x.csv"
    saved = (import_root / stored.path).resolve()
    assert saved.parent == upload_dir(import_root).resolve()
    assert saved.name != "x.csv"
    assert not (tmp_path / "x.csv").exists() and not (import_root / "x.csv").exists()
    windows = store(b"a,b\n1,2\n", "..\\..\\evil.csv")
    assert windows.original_name == "evil.csv"
    assert (import_root / windows.path).resolve().parent == upload_dir(import_root).resolve()


def test_an_uploaded_jsonl_file_can_be_read_by_a_source(import_root: Path) -> None:
    lines = [json.dumps({"id": i, "v": f"x{i}"}) for i in range(3)]
    stored = store(("\n".join(lines) + "\n").encode(), "events.jsonl")
    assert stored.format == "jsonl"
    source = JsonFileSource()
    config = bound(source, {"path": stored.path}, workspace_id=WORKSPACE)
    [stream] = source.discover(config)
    rows = [
        r
        for item in source.read(config, stream, None)
        if isinstance(item, Batch)
        for r in item.table.to_pylist()
    ]
    assert rows == [{"id": 0, "v": "x0"}, {"id": 1, "v": "x1"}, {"id": 2, "v": "x2"}]


def test_binary_formats_are_recognised(import_root: Path, tmp_path: Path) -> None:
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": [1, 2]}), buffer)
    assert store(buffer.getvalue().to_pybytes(), "t.parquet").format == "parquet"

    db = tmp_path / "x.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (a INTEGER)")
    assert store(db.read_bytes(), "app.db").format == "sqlite"
    assert store(db.read_bytes(), "app.sqlite").format == "sqlite"

    book = openpyxl.Workbook()
    book.active.append(["a", "b"])
    book.save(tmp_path / "b.xlsx")
    assert store((tmp_path / "b.xlsx").read_bytes(), "Book.xlsx").format == "xlsx"

    assert store(gzip.compress(b"a,b\n1,2\n"), "d.csv.gz").format == "csv.gz"
    assert store(zip_bytes({"d.csv": b"a\n1\n"}), "d.zip").format == "zip"
    latin1 = "name\nJos\u00e9\n".encode("latin-1")
    assert store(latin1, "names.txt").format == "txt"


# --- size limit ----------------------------------------------------------------------------------------


class EndlessStream(io.RawIOBase):
    """A client that never stops sending: the limit must stop the copy, not the end of the input."""

    def __init__(self) -> None:
        self.sent = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = 65536 if size is None or size < 0 else min(size, 65536)
        self.sent += n
        return b"a,b\n" * (n // 4)


def test_an_oversize_upload_is_aborted_while_streaming_and_nothing_is_left(
    import_root: Path, settings: Any
) -> None:
    settings.AGGREGATOR_UPLOAD_MAX_BYTES = 100_000
    stream = EndlessStream()
    with pytest.raises(
        UploadRefused, match=r"'big.csv' is larger than the upload limit of 100000 bytes"
    ) as exc:
        upload_store(workspace_id=WORKSPACE, file=stream, file_name="big.csv")
    assert exc.value.field == "file"
    assert stream.sent < 100_000 + 2 * 1024 * 1024  # stopped at the first chunk over the limit
    assert files_in(upload_dir(import_root)) == []
    exactly = store(b"x" * 100_000, "edge.txt")
    assert exactly.size == 100_000


# --- content sniffing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"PAR1" + b"\x00" * 20 + b"PAR1", "data.csv", "'data.csv' claims '.csv' but its content is parquet"),
        (b"id,name\n1,a\n", "data.parquet", "'data.parquet' claims '.parquet' but its content is text"),
        (b"id,name\n1,a\n", "data.gz", "claims '.gz' but its content is text, not gzip"),
        (gzip.compress(b"a,b\n"), "data.zip", "claims '.zip' but its content is gzip, not zip"),
        (b"MZ\x90\x00\x03\x00\x00\x00binary", "tool.txt", "claims '.txt' but it contains NUL bytes"),
        (b"id,name\n1,a\n", "data.json", "a .json file must start with a JSON object or array"),
        (zip_bytes({"a.csv": b"a\n"}), "book.xlsx", "claims '.xlsx' but the zip has no [Content_Types].xml"),
        (b"SQLite format 3\x00" + b"\x00" * 100, "data.csv", "its content is sqlite, not text"),
        (
            gzip.compress(b"\x00\x01\x02binary"),
            "rows.csv.gz",
            "claims '.csv.gz' but in the gzip it contains NUL",
        ),
    ],
)
def test_content_that_does_not_match_the_extension_is_refused(
    import_root: Path, data: bytes, name: str, message: str
) -> None:
    with pytest.raises(UploadRefused) as exc:
        store(data, name)
    assert message in exc.value.message
    assert files_in(upload_dir(import_root)) == []


def test_an_xlsx_named_zip_is_refused(import_root: Path, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.save(tmp_path / "b.xlsx")
    with pytest.raises(UploadRefused, match=r"its content is an Excel workbook; name it \.xlsx"):
        store((tmp_path / "b.xlsx").read_bytes(), "b.zip")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("run.exe", "Extension '.exe' is not allowed"),
        ("archive.tar", "Extension '.tar' is not allowed"),
        ("README", "has no extension"),
        ("", "has no extension"),
    ],
)
def test_extensions_off_the_allow_list_are_refused(import_root: Path, name: str, message: str) -> None:
    with pytest.raises(UploadRefused, match=message):
        store(b"hello\n", name)
    assert files_in(upload_dir(import_root)) == []


def test_a_workspace_id_cannot_steer_the_upload_path(import_root: Path) -> None:
    with pytest.raises(UploadRefused, match=r"Workspace id '\.\./x' is not valid"):
        upload_store(workspace_id="../x", file=io.BytesIO(b"a\n"), file_name="a.csv")
    assert not (import_root / "x").exists()


# --- archives ------------------------------------------------------------------------------------------


def test_a_zip_with_a_traversal_entry_is_refused(import_root: Path) -> None:
    data = zip_bytes({"ok.csv": b"a\n1\n", "../../etc/passwd": b"root:x:0:0\n"})
    with pytest.raises(UploadRefused) as exc:
        store(data, "bundle.zip")
    assert exc.value.message == "zip entry '../../etc/passwd' escapes the archive."
    assert files_in(upload_dir(import_root)) == []
    for bad in ("/abs/path.csv", "C:/windows/x.csv", "a\\..\\..\\b.csv"):
        with pytest.raises(UploadRefused, match="escapes the archive"):
            store(zip_bytes({bad: b"a\n"}), "b.zip")


def test_a_zip_with_a_symlink_entry_is_refused(import_root: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.csv", b"a\n1\n")
        link = zipfile.ZipInfo("passwd.csv")
        link.create_system = 3  # Unix: the mode bits below are meaningful
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(UploadRefused, match=r"zip entry 'passwd\.csv' is a symbolic link"):
        store(buffer.getvalue(), "links.zip")
    assert files_in(upload_dir(import_root)) == []


def test_a_zip_with_too_many_entries_is_refused(import_root: Path, settings: Any) -> None:
    settings.AGGREGATOR_ARCHIVE_MAX_ENTRIES = 3
    data = zip_bytes({f"f{i}.csv": b"a\n" for i in range(5)})
    with pytest.raises(UploadRefused, match=r"'many.zip' has 5 entries \(the limit is 3\)"):
        store(data, "many.zip")


def test_a_decompression_bomb_is_refused_before_extraction(import_root: Path, settings: Any) -> None:
    settings.AGGREGATOR_ARCHIVE_MAX_RATIO = 50
    data = zip_bytes({"zeros.csv": b"\x00" * (3 * 1024 * 1024)})
    assert len(data) < 10_000  # about 1000x
    with pytest.raises(UploadRefused) as exc:
        store(data, "bomb.zip")
    assert exc.value.message.startswith("zip entry 'zeros.csv' expands ")
    assert "(the limit is 50x); refused as a decompression bomb." in exc.value.message
    assert files_in(upload_dir(import_root)) == []


def test_a_zip_over_the_total_size_limit_is_refused(import_root: Path, settings: Any) -> None:
    settings.AGGREGATOR_ARCHIVE_MAX_BYTES = 50_000
    data = zip_bytes({"a.csv": b"x" * 30_000, "b.csv": b"y" * 30_000}, compression=zipfile.ZIP_STORED)
    with pytest.raises(
        UploadRefused, match=r"'two.zip' declares 60000 decompressed bytes \(the limit is 50000\)"
    ):
        store(data, "two.zip")


def _lie_about_size(data: bytes, declared: int) -> bytes:
    """Rewrite the uncompressed size of the (only) entry in both its local and central headers."""
    patched = bytearray(data)
    local = patched.index(b"PK\x03\x04")
    patched[local + 22 : local + 26] = struct.pack("<I", declared)
    central = patched.index(b"PK\x01\x02")
    patched[central + 24 : central + 28] = struct.pack("<I", declared)
    return bytes(patched)


def test_a_zip_whose_header_understates_the_size_is_refused(import_root: Path) -> None:
    honest = zip_bytes({"rows.csv": b"a,b\n" + b"1,2\n" * 500_000})  # 2 MB
    lying = _lie_about_size(honest, 1_000)
    with zipfile.ZipFile(io.BytesIO(lying)) as archive:
        assert archive.getinfo("rows.csv").file_size == 1_000  # checks on the headers alone would pass
    with pytest.raises(UploadRefused) as exc:
        store(lying, "liar.zip")
    assert exc.value.message.startswith("zip entry 'rows.csv' is corrupt or its header lies about its size")
    assert files_in(upload_dir(import_root)) == []


def test_a_gzip_bomb_is_stopped_by_the_byte_counter(import_root: Path, settings: Any) -> None:
    settings.AGGREGATOR_ARCHIVE_MAX_BYTES = 200_000
    data = bytearray(gzip.compress(b"a,b\n" * 1_000_000))  # 4 MB decompressed
    data[-4:] = struct.pack("<I", 100)  # the trailer claims 100 bytes: the counter does not trust it
    with pytest.raises(UploadRefused, match=r"'rows.csv.gz' decompresses to more than 200000 bytes"):
        store(bytes(data), "rows.csv.gz")
    assert files_in(upload_dir(import_root)) == []


# --- gzip ratio ---------------------------------------------------------------------------------------------

BOMB_MESSAGE = r"'?{name}'? expands at least \d+x \(the limit is 200x\); refused as a decompression bomb\."


def gzip_bomb(chunk: bytes, total: int = 1024**3) -> bytes:
    """`total` bytes of `chunk` repeated, gzip-compressed by a streaming compressor (never held whole)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    block = chunk * (1024 * 1024 // len(chunk))
    out = io.BytesIO()
    for _ in range(total // len(block)):
        out.write(compressor.compress(block))
    out.write(compressor.flush())
    return out.getvalue()


@pytest.fixture(scope="module")
def zeros_gz() -> bytes:
    """1 GiB of zeros in about 1 MB of gzip (1029x)."""
    return gzip_bomb(b"\x00")


def test_a_gzip_bomb_is_refused_at_upload_by_its_ratio(import_root: Path, zeros_gz: bytes) -> None:
    assert len(zeros_gz) < 1_100_000
    with pytest.raises(UploadRefused) as exc:
        store(zeros_gz, "zeros.csv.gz")
    assert re.fullmatch(BOMB_MESSAGE.format(name="zeros.csv.gz"), exc.value.message), exc.value.message
    assert files_in(upload_dir(import_root)) == []  # no part file either
    with pytest.raises(UploadRefused, match=BOMB_MESSAGE.format(name="zeros.gz")):
        store(zeros_gz, "zeros.gz")
    assert files_in(upload_dir(import_root)) == []


@pytest.mark.parametrize(
    ("source", "name", "chunk"),
    [
        (CsvFileSource, "zeros.csv.gz", b"0\n"),
        (JsonFileSource, "zeros.jsonl.gz", b'{"a":0}\n'),
        (ParquetFileSource, "zeros.parquet.gz", b"\x00"),
    ],
)
def test_a_gzip_bomb_put_in_the_import_area_is_refused_when_read(
    import_root: Path, source: Any, name: str, chunk: bytes
) -> None:
    (import_root / name).write_bytes(gzip_bomb(chunk, total=64 * 1024 * 1024))  # by other means
    config = bound(source, {"path": name}, workspace_id=WORKSPACE)
    with pytest.raises(ConnectorError) as exc:
        [stream] = source().discover(config)  # reads a sample only: a bomb may pass this far
        for _ in source().read(config, stream, None):
            pass
    assert re.fullmatch(BOMB_MESSAGE.format(name=name), exc.value.message), exc.value.message
    assert exc.value.field == "path"


def test_the_zeros_bomb_read_by_the_csv_source_is_refused_too(import_root: Path, zeros_gz: bytes) -> None:
    (import_root / "zeros.csv.gz").write_bytes(zeros_gz)
    config = bound(CsvFileSource, {"path": "zeros.csv.gz"}, workspace_id=WORKSPACE)
    with pytest.raises(ConnectorError) as exc:
        CsvFileSource().discover(config)
    assert exc.value.field == "path" and exc.value.message.startswith("Cannot parse zeros.csv.gz")


def test_a_normal_csv_gz_is_uploaded_and_read(import_root: Path) -> None:
    rng = random.Random(7)
    lines = [f"{i},{rng.random():.6f},{rng.choice(['UA', 'AA', 'B6', 'DL'])}" for i in range(200_000)]
    text = ("id,x,carrier\n" + "\n".join(lines) + "\n").encode()
    data = gzip.compress(text)
    assert len(text) > 2 * 1024 * 1024 and len(text) / len(data) < 10  # past the ratio's 1 MiB floor
    stored = store(data, "flights.csv.gz")
    assert stored.format == "csv.gz" and stored.path.endswith(".csv.gz")
    source = CsvFileSource()
    config = bound(source, {"path": stored.path}, workspace_id=WORKSPACE)
    [stream] = source.discover(config)
    rows = sum(item.table.num_rows for item in source.read(config, stream, None) if isinstance(item, Batch))
    assert rows == 200_000
