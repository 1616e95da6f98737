"""Ingest files in the public format: read, validate and pseudonymize every record into an on-disk
spool (pass 1), then write the spool to Neo4j kind by kind in batches (pass 2). With `strict`, a
file holding any invalid record contributes nothing; memory stays bounded by the batch size."""

from __future__ import annotations

import codecs
import csv
import dataclasses
import gzip
import io
import itertools
import json
import marshal
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from core.config import DEFAULT_BATCH_SIZE
from core.errors import InvalidInputError, RecordError
from core.vocabulary import KINDS
from graph.pseudonymize import Pseudonymizer
from graph.records import parse_record
from graph.store import GraphStore
from graph.writes import WRITERS, WriteCounts, write_tenants

MAX_REPORTED_ERRORS = 20
MAX_LINE_BYTES = 1 << 20  # one record; a longer line is rejected, not read into memory
EVENT_KINDS = ("interaction", "signal")
_SUFFIXES = (".jsonl", ".jsonl.gz", ".csv", ".csv.gz")
_GROUND_TRUTH = "ground_truth"
PART_BYTES = 32 << 20  # the parallel validation's unit of work (about 150,000 interactions)


@dataclass(frozen=True)
class Rejection:
    file: str
    line: int
    reason: str
    field: str = ""


@dataclass
class IngestSummary:
    files: int = 0
    files_rejected: int = 0
    records_read: int = 0
    accepted: int = 0
    rejected: int = 0
    first_errors: list[Rejection] = field(default_factory=list)
    accepted_by_kind: dict[str, int] = field(default_factory=dict)
    nodes_created: int = 0
    relationships_created: int = 0
    events_added: int = 0
    events_already_present: int = 0
    validate_seconds: float = 0.0
    write_seconds: float = 0.0
    seconds: float = 0.0
    events_per_s: float = 0.0
    mode: str = "transactional"  # or "initial": the bulk initial load (graph/bulk_load.py)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # folders left out, with why

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def input_files(paths: Iterable[str | Path], skipped: list[str] | None = None) -> list[Path]:
    """Expand folders into the ingest files they hold (sorted), and check that each path exists.
    A folder written by `relgraph generate` contributes its `ingest/` part: its `ground_truth/`
    holds the generator's answers, not records, and is noted in `skipped`."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and (path / "ingest").is_dir() and (path / _GROUND_TRUTH).is_dir():
            if skipped is not None:
                skipped.append(f"{path / _GROUND_TRUTH}: the generator's ground truth, not ingest records")
            path = path / "ingest"
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(_SUFFIXES)))
        elif path.is_file():
            if not path.name.endswith(_SUFFIXES):
                raise InvalidInputError(f"{path}: unsupported file type; use {', '.join(_SUFFIXES)}")
            files.append(path)
        else:
            raise InvalidInputError(f"{path}: no such file or directory")
    return files


def _open_binary(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # a GzipFile is a binary file
    return open(path, "rb")


# What can go wrong while reading the bytes of a file (a truncated or corrupt gzip stream, a read
# error): the file stops there, with a line-numbered rejection, never a traceback.
_READ_ERRORS = (OSError, EOFError, zlib.error)


def _csv_kind(path: Path) -> str | None:
    """A CSV file holds one kind, named by its file name (`interactions.csv`) unless a `kind` column says."""
    stem = path.name.split(".")[0]
    return next((k for k in sorted(KINDS, key=len, reverse=True) if stem.startswith(k)), None)


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | RecordError, str | None]]:
    """Yield (line number, record or the reason it cannot be read, default kind) for each record.
    Whatever the bytes (invalid UTF-8, a byte-order mark, deep nesting, huge lines, a truncated
    gzip stream), each problem becomes a RecordError on its line."""
    if ".csv" in path.name:
        yield from _csv_records(path)
    else:
        yield from _jsonl_records(path)


def _lines(fh: IO[bytes], end: int | None = None) -> Iterator[tuple[int, bytes | RecordError]]:
    """Numbered lines of at most MAX_LINE_BYTES, up to the line that starts at or after byte `end`;
    a longer line is skipped whole and reported."""
    number = 0
    while end is None or fh.tell() < end:
        line = fh.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := fh.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield number, RecordError(f"line longer than {MAX_LINE_BYTES} bytes")
            continue
        yield number, line


def _jsonl_records(
    path: Path, start: int = 0, end: int | None = None
) -> Iterator[tuple[int, dict[str, Any] | RecordError, None]]:
    """The records of the lines that start in bytes [start, end) of an uncompressed file (all of
    any file by default), numbered from that range's first line."""
    number = 0
    try:
        with _open_binary(path) as fh:
            if start:  # the rest of the line that started before `start` belongs to the range before
                fh.seek(start - 1)
                while (rest := fh.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
            for number, line in _lines(fh, end):
                if isinstance(line, RecordError):
                    yield number, line, None
                    continue
                if number == 1 and start == 0 and line.startswith(codecs.BOM_UTF8):
                    line = line[len(codecs.BOM_UTF8) :]
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield number, RecordError(f"not valid UTF-8 at byte {exc.start + 1}"), None
                    continue
                if text.strip():
                    yield number, _json_record(text), None
    except _READ_ERRORS as exc:
        yield number + 1, RecordError(f"the file cannot be read past line {number}: {_reason(exc)}"), None


def _json_record(text: str) -> dict[str, Any] | RecordError:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return RecordError(f"not valid JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return RecordError("not valid JSON: nested too deeply")
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        return RecordError(f"not valid JSON: {_reason(exc)}")
    return value if isinstance(value, dict) else RecordError("a record must be a JSON object")


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | RecordError, str | None]]:
    default_kind = _csv_kind(path)
    line = 0
    try:
        with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                line = reader.line_num
                yield line, {k: v for k, v in row.items() if k is not None}, default_kind
    except UnicodeDecodeError as exc:
        yield line + 1, RecordError(f"not valid UTF-8 at byte {exc.start + 1} of its block; the file stops here"), None
    except csv.Error as exc:
        yield line + 1, RecordError(f"not valid CSV: {_reason(exc)}; the file stops here"), None
    except _READ_ERRORS as exc:
        yield line + 1, RecordError(f"the file cannot be read past line {line}: {_reason(exc)}"), None


def _reason(exc: BaseException) -> str:
    return str(exc)[:200] or type(exc).__name__


class _Spool:
    """Validated rows on disk, one file per kind of length-prefixed marshal chunks (a chunk is read
    in one call: `marshal.load` on a file reads it in small pieces, several times slower),
    truncatable to undo a rejected file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Open for the spool's life, closed by close().
        self._files = {k: open(directory / f"{k}.spool", "w+b") for k in KINDS}  # noqa: SIM115
        self._pending: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}

    def append(self, other: Path) -> None:
        """Add the rows of the closed spool in folder `other` after this one's."""
        self.flush()
        for k, f in self._files.items():
            with open(other / f"{k}.spool", "rb") as rows:
                shutil.copyfileobj(rows, f)

    def mark(self) -> dict[str, int]:
        self.flush()
        return {k: f.tell() for k, f in self._files.items()}

    def rewind(self, mark: dict[str, int]) -> None:
        for k, f in self._files.items():
            self._pending[k].clear()
            f.seek(mark[k])
            f.truncate()

    def add(self, kind: str, row: dict[str, Any], chunk: int) -> None:
        pending = self._pending[kind]
        pending.append(row)
        if len(pending) >= chunk:
            self._dump(kind)

    def flush(self) -> None:
        for k, pending in self._pending.items():
            if pending:
                self._dump(k)

    def _dump(self, kind: str) -> None:
        data = marshal.dumps(self._pending[kind])
        self._files[kind].write(len(data).to_bytes(8, "little") + data)
        self._pending[kind].clear()

    def chunks(self, kind: str) -> Iterator[list[dict[str, Any]]]:
        f = self._files[kind]
        f.seek(0)
        while size := f.read(8):
            yield marshal.loads(f.read(int.from_bytes(size, "little")))

    def close(self) -> None:
        for f in self._files.values():
            f.close()


RecordStream = Iterable[tuple[int, "dict[str, Any] | RecordError", "str | None"]]
# What an ingest reads: files, or named record streams (a gRPC stream), each all-or-nothing under
# `strict`. A stream yields (position, record or why it could not be read, kind implied by its source).
Source = Path | tuple[str, RecordStream]


def ingest(
    store: GraphStore,
    paths: Iterable[str | Path],
    pseudo: Pseudonymizer,
    *,
    strict: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | None = None,
) -> IngestSummary:
    """Validate and pseudonymize every record of `paths`, then write the accepted ones to Neo4j."""
    skipped: list[str] = []
    files = input_files(paths, skipped)
    summary = ingest_sources(store, files, pseudo, strict=strict, batch_size=batch_size, progress=progress)
    summary.skipped = skipped
    return summary


def ingest_sources(
    store: GraphStore,
    sources: Sequence[Source],
    pseudo: Pseudonymizer,
    *,
    strict: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | None = None,
) -> IngestSummary:
    """Ingest files or named record streams: each is all-or-nothing under `strict`."""
    show = sys.stderr.isatty() if progress is None else progress
    with validated(sources, pseudo, strict=strict, chunk=batch_size, show=show) as run:
        counts = WriteCounts()
        write_tenants(store, sorted(run.tenants), counts)  # every tenant whose data arrives exists as a Tenant
        bar = tqdm(total=run.summary.accepted, desc="write", unit=" rec", disable=not show, file=sys.stderr)
        with run.phase("write"), bar:
            for kind in KINDS:  # entities before the events that reference them
                for chunk in run.spool.chunks(kind):
                    for start in range(0, len(chunk), batch_size):
                        batch = chunk[start : start + batch_size]
                        WRITERS[kind](store, batch, counts)
                        bar.update(len(batch))
    summary = run.finish()
    summary.nodes_created = counts.nodes_created
    summary.relationships_created = counts.relationships_created
    summary.events_added = counts.events_added
    summary.events_already_present = counts.events_already_present
    return summary


@dataclass
class ValidatedRun:
    """The accepted rows of an ingest, spooled on disk by kind, with the summary so far and the
    seconds of each phase (`phase`) of what the caller then does with them."""

    spool: _Spool
    summary: IngestSummary
    tenants: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.summary.phase_seconds[name] = round(time.perf_counter() - began, 3)

    def finish(self) -> IngestSummary:
        summary = self.summary
        summary.seconds = round(time.perf_counter() - self.started, 3)
        summary.validate_seconds = summary.phase_seconds.get("validate", 0.0)
        summary.write_seconds = round(summary.seconds - summary.validate_seconds, 3)
        events = sum(summary.accepted_by_kind.get(k, 0) for k in EVENT_KINDS)
        summary.events_per_s = round(events / summary.seconds, 1) if summary.seconds > 0 else 0.0
        return summary


@contextmanager
def validated(
    sources: Sequence[Source],
    pseudo: Pseudonymizer,
    *,
    strict: bool,
    chunk: int,
    show: bool,
    part_bytes: int = PART_BYTES,
) -> Iterator[ValidatedRun]:
    """Pass 1 of an ingest: validate and pseudonymize every record of `sources` into a spool that
    lives as long as the context. Files holding at least two parts of `part_bytes` in all are
    validated on every core (`_validate_in_parallel`), with the same result."""
    with tempfile.TemporaryDirectory(prefix="relgraph-ingest-") as tmp:
        run = ValidatedRun(_Spool(Path(tmp)), IngestSummary(files=len(sources)))
        try:
            accepted = dict.fromkeys(KINDS, 0)
            with run.phase("validate"), tqdm(desc="validate", unit=" rec", disable=not show, file=sys.stderr) as bar:
                files = [s for s in sources if isinstance(s, Path)]
                workers = len(os.sched_getaffinity(0))
                if len(files) == len(sources) and workers > 1 and _total_bytes(files) >= 2 * part_bytes:
                    _validate_in_parallel(files, pseudo, run, accepted, strict, chunk, bar, workers, part_bytes)
                else:
                    for source in sources:
                        name, records = (str(source), read_records(source)) if isinstance(source, Path) else source
                        run.tenants |= _validate_source(
                            name, records, pseudo, run.spool, run.summary, accepted, strict, chunk, bar
                        )
                run.spool.flush()
            run.summary.accepted_by_kind = {k: n for k, n in accepted.items() if n}
            yield run
        finally:
            run.spool.close()


def _total_bytes(files: Sequence[Path]) -> int:
    return sum(path.stat().st_size for path in files)


# -- parallel validation ----------------------------------------------------------------------
# Validation and pseudonymization are pure Python and CPU-bound: large inputs are cut into parts
# (a plain JSONL file into byte ranges of whole lines, any other file whole), validated by a pool
# of processes that each write a spool of their own, and merged in input order, file by file, so
# that strict mode, the line numbers of rejections and the order of rows are those of one process.


@dataclass(frozen=True)
class _Part:
    """The lines starting in bytes [start, end) of a plain JSONL file; `end` None: a whole file."""

    file: int  # index in the ingest's files
    path: Path
    start: int = 0
    end: int | None = None


@dataclass
class _PartResult:
    spool_dir: Path
    summary: IngestSummary  # this part's alone, validated without strict mode
    accepted: dict[str, int]
    tenants: set[str]


_worker_pseudo: Pseudonymizer | None = None


def _init_worker(pseudo: Pseudonymizer) -> None:
    global _worker_pseudo
    _worker_pseudo = pseudo


def _validate_part(part: _Part, chunk: int, directory: Path) -> _PartResult:
    assert _worker_pseudo is not None, "the pool's initializer sets the pseudonymizer"
    spool_dir = Path(tempfile.mkdtemp(prefix="part-", dir=directory))
    spool = _Spool(spool_dir)
    result = _PartResult(spool_dir, IngestSummary(), dict.fromkeys(KINDS, 0), set())
    records = read_records(part.path) if part.end is None else _jsonl_records(part.path, part.start, part.end)
    try:
        result.tenants = _validate_source(
            str(part.path), records, _worker_pseudo, spool, result.summary, result.accepted, False, chunk, None
        )
        spool.flush()
    finally:
        spool.close()
    return result


def _parts(files: Sequence[Path], part_bytes: int) -> list[_Part]:
    parts: list[_Part] = []
    for index, path in enumerate(files):
        size = path.stat().st_size
        if path.name.endswith(".jsonl") and size > part_bytes:
            bounds = [*range(0, size, part_bytes), size]
            parts.extend(_Part(index, path, start, end) for start, end in itertools.pairwise(bounds))
        else:
            parts.append(_Part(index, path))
    return parts


def _lines_before(path: Path, start: int) -> int:
    """How many lines of `path` start before byte `start` (numbering a part's lines in its file)."""
    if start == 0:
        return 0
    newlines = 0
    with open(path, "rb") as fh:
        remaining = start - 1  # a line starts after each newline before byte start - 1
        while remaining > 0 and (block := fh.read(min(remaining, 1 << 24))):
            newlines += block.count(b"\n")
            remaining -= len(block)
    return newlines + 1


def _validate_in_parallel(
    files: Sequence[Path],
    pseudo: Pseudonymizer,
    run: ValidatedRun,
    accepted: dict[str, int],
    strict: bool,
    chunk: int,
    bar: tqdm,
    workers: int,
    part_bytes: int,
) -> None:
    parts = _parts(files, part_bytes)
    # fork: the workers inherit the pseudonymizer (its key is never pickled) and start at once.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(pseudo,)) as pool:
        futures = [pool.submit(_validate_part, part, chunk, run.spool.directory) for part in parts]
        for _, file_parts in itertools.groupby(zip(parts, futures, strict=True), key=lambda pf: pf[0].file):
            results = [(part, future.result()) for part, future in file_parts]
            for _, result in results:
                bar.update(result.summary.records_read)
            _merge_file(results, run, accepted, strict)


def _merge_file(
    results: list[tuple[_Part, _PartResult]], run: ValidatedRun, accepted: dict[str, int], strict: bool
) -> None:
    """Add one file's validated parts to the run, as `_validate_source` adds a file."""
    summary = run.summary
    errors = 0
    for part, result in results:
        summary.records_read += result.summary.records_read
        errors += result.summary.rejected
        offset = _lines_before(part.path, part.start) if result.summary.first_errors else 0
        for rejection in result.summary.first_errors:
            if len(summary.first_errors) < MAX_REPORTED_ERRORS:
                summary.first_errors.append(dataclasses.replace(rejection, line=rejection.line + offset))
    file_accepted = {kind: sum(result.accepted[kind] for _, result in results) for kind in KINDS}
    if _settle_file(summary, accepted, file_accepted, errors, strict):
        for _, result in results:
            run.spool.append(result.spool_dir)
            run.tenants |= result.tenants
    for _, result in results:
        shutil.rmtree(result.spool_dir, ignore_errors=True)


def _settle_file(
    summary: IngestSummary, accepted: dict[str, int], file_accepted: dict[str, int], errors: int, strict: bool
) -> bool:
    """Count a validated file's records into the summary; False when strict mode refuses it whole
    (it had errors), and what it accepted must be dropped."""
    summary.rejected += errors
    if strict and errors:
        summary.files_rejected += 1
        summary.rejected += sum(file_accepted.values())
        return False
    for kind, n in file_accepted.items():
        accepted[kind] += n
        summary.accepted += n
    return True


def _validate_source(
    name: str,
    records: RecordStream,
    pseudo: Pseudonymizer,
    spool: _Spool,
    summary: IngestSummary,
    accepted: dict[str, int],
    strict: bool,
    chunk: int,
    bar: tqdm | None,
) -> set[str]:
    """Validate one source into the spool; returns the tenants of the records it contributed."""
    mark = spool.mark()
    file_accepted = dict.fromkeys(KINDS, 0)
    tenants: set[str] = set()
    file_errors = 0
    for line, record, default_kind in records:
        summary.records_read += 1
        if bar is not None:
            bar.update(1)
        try:
            if isinstance(record, RecordError):
                raise record
            kind, tenant, row = parse_record(record, pseudo, default_kind)
        except RecordError as exc:
            file_errors += 1
            if len(summary.first_errors) < MAX_REPORTED_ERRORS:
                summary.first_errors.append(Rejection(name, line, exc.reason, exc.field or ""))
            continue
        row["tenant"] = tenant
        tenants.add(tenant)
        spool.add(kind, row, chunk)
        file_accepted[kind] += 1
    if not _settle_file(summary, accepted, file_accepted, file_errors, strict):
        spool.rewind(mark)
        return set()
    return tenants
