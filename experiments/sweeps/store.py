"""The results of a sweep: one Parquet dataset (a directory of Parquet files), one row per finished point.

Each finished point is written at once as its own small Parquet file (``part-*.parquet``, written to a
hidden temporary name and renamed, so a crash never leaves a half-written file); a finished run
compacts the parts into one file. Beside the data, ``_sweep.json`` holds the spec (its fingerprint
guards against mixing results of a different task, backend or card into the same dataset). Files
starting with ``_`` or ``.`` are not data (pyarrow's dataset convention).

Columns: ``point_id``; one per swept parameter, named by its path (``variability.read_noise_rel``);
``chip_seed``, ``repeat``; ``status`` ("ok" or "failed"), ``error``, ``attempts``; ``value`` (the
spec's metric) and one float column per metric of the task; ``seconds`` (the point's own run time),
``worker`` (host:pid), ``finished_at`` (UTC), ``run_id`` (which ``sweep run`` produced the row).
A point written twice (failed, then retried by a later run) is read back as its latest row.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from experiments.sweeps.spec import METRICS, SweepSpec, SweepSpecError, spec_from_mapping

META_FILE = "_sweep.json"


def _param_type(values: list[Any]) -> pa.DataType:
    if all(isinstance(v, bool) for v in values):
        return pa.bool_()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.int64()
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return pa.float64()
    return pa.string()


def schema_for(spec: SweepSpec) -> pa.Schema:
    """The Arrow schema of a sweep's rows (fixed, so a file of failed points matches a file of good ones)."""
    fields = [pa.field("point_id", pa.string())]
    fields += [pa.field(axis.param, _param_type(axis.grid_values())) for axis in spec.grid]
    fields += [
        pa.field("chip_seed", pa.int64()),
        pa.field("repeat", pa.int64()),
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("attempts", pa.int64()),
        pa.field("value", pa.float64()),
    ]
    fields += [pa.field(name, pa.float64()) for name in METRICS[spec.task.kind]]
    fields += [
        pa.field("seconds", pa.float64()),
        pa.field("worker", pa.string()),
        pa.field("finished_at", pa.timestamp("ms", tz="UTC")),
        pa.field("run_id", pa.string()),
    ]
    return pa.schema(fields)


class ResultStore:
    """The Parquet dataset of one sweep at ``root`` (created if needed); see the module docstring."""

    def __init__(self, root: Path, spec: SweepSpec) -> None:
        self.root, self.spec = Path(root), spec
        self.schema = schema_for(spec)
        self.run_id = uuid.uuid4().hex[:12]
        self._parts = 0
        meta_path = self.root / META_FILE
        if self.root.exists() and not self.root.is_dir():
            raise SweepSpecError(f"results {self.root} exists and is not a directory")
        if meta_path.is_file():
            old = json.loads(meta_path.read_text())
            if old.get("fingerprint") != spec.fingerprint():
                raise SweepSpecError(
                    f"results {self.root} hold a sweep with a different task, backend or card "
                    f"({old.get('name')!r}); write to another --out"
                )
            params = [axis["param"] for axis in old["spec"]["grid"]]
            if params != spec.params:
                raise SweepSpecError(
                    f"results {self.root} sweep {params}, this spec sweeps {spec.params}; "
                    "write to another --out"
                )
        self.root.mkdir(parents=True, exist_ok=True)
        meta = {"name": spec.name, "fingerprint": spec.fingerprint(), "spec": spec.model_dump(mode="json")}
        _atomic_write(meta_path, (json.dumps(meta, indent=2) + "\n").encode())

    def finished_ids(self) -> set[str]:
        """Ids of the points whose latest row is "ok" (a re-run skips them)."""
        table = latest_rows(self._read_all())
        ok = table.filter(pc.equal(table["status"], "ok"))
        return set(ok["point_id"].to_pylist())

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` as one new Parquet file, atomically (flushed before this returns)."""
        if not rows:
            return
        self._parts += 1
        table = pa.Table.from_pylist([self._complete(r) for r in rows], schema=self.schema)
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{self.run_id}-{self._parts:06d}.parquet"
        _atomic_parquet(table, self.root / name)

    def compact(self) -> None:
        """Merge every part file into one (latest row per point); a crash midway leaves readable data."""
        parts = sorted(self.root.glob("*.parquet"))
        if len(parts) <= 1:
            return
        table = latest_rows(self._read_all())
        _atomic_parquet(table, self.root / f"points-{time.strftime('%Y%m%dT%H%M%S')}-{self.run_id}.parquet")
        for part in parts:
            part.unlink()

    def _complete(self, row: dict[str, Any]) -> dict[str, Any]:
        full: dict[str, Any] = {name: None for name in self.schema.names}
        full.update(row)
        full["run_id"] = self.run_id
        return full

    def _read_all(self) -> pa.Table:
        files = sorted(self.root.glob("*.parquet"))
        if not files:
            return self.schema.empty_table()
        return pa.concat_tables([pq.read_table(f, schema=self.schema) for f in files])


def latest_rows(table: pa.Table) -> pa.Table:
    """One row per ``point_id``: the one finished last."""
    if table.num_rows == 0:
        return table
    order = pc.sort_indices(table, sort_keys=[("finished_at", "ascending")])
    table = table.take(order)
    last: dict[str, int] = {pid: i for i, pid in enumerate(table["point_id"].to_pylist())}
    return table.take(sorted(last.values()))


def read_results(root: str | Path) -> tuple[SweepSpec, pa.Table]:
    """The spec and the latest row of every point of the sweep stored at ``root``."""
    path = Path(root)
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise SweepSpecError(f"{path} is not a sweep results dataset (no {META_FILE}; see hwloop sweep run)")
    spec = spec_from_mapping(json.loads(meta_path.read_text())["spec"], str(meta_path))
    schema = schema_for(spec)
    files = sorted(path.glob("*.parquet"))
    tables = [pq.read_table(f, schema=schema) for f in files]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return spec, latest_rows(table)


def _atomic_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
