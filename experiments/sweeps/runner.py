"""Running a sweep: every unfinished point as one task, on Ray (local or a cluster) or a process pool.

Both executors do the same thing: submit at most as many points as the cluster / pool can run at once
(each point declares ``execution.cpus_per_point`` CPUs), store each result the moment it arrives, and
resubmit a point that raised or whose worker died (killed, node lost) until it has had
``1 + execution.retries`` attempts; then it is stored as failed with its error and the sweep goes on.
Points already stored as "ok" are skipped, so an interrupted sweep resumes where it stopped.

Ray: ``ray.init()`` starts a local cluster on this machine's cores (stopped at the end); with
``address`` the sweep joins an existing cluster (``ray start --head`` ...), whose nodes must have
hwloop installed (the same version) and see any card, calibration or checkpoint file the spec names
by path (the card itself is sent with each point). Without Ray installed, ``executor="auto"`` falls back
to the process pool, with the same results: a point's numbers depend only on the spec and its seeds.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from experiments.sweeps.point import hardware_aware_training, point_backend, run_point
from experiments.sweeps.spec import Point, SweepSpec
from experiments.sweeps.store import ResultStore
from hwloop.errors import HwloopError

Executor = Literal["auto", "ray", "pool"]
PointFn = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


@dataclass
class SweepOutcome:
    """What one ``run_sweep`` did: point counts, wall time (s) and the executor used."""

    total: int
    skipped: int
    done: int = 0
    failed: int = 0
    retried: int = 0
    seconds: float = 0.0
    executor: str = ""
    failures: list[str] = field(default_factory=list)


class ProgressSink(Protocol):
    """Receives progress: ``start(total)``, then ``update(done, failed, running)`` after every change."""

    def start(self, total: int) -> None: ...

    def update(self, done: int, failed: int, running: int) -> None: ...


class SweepError(HwloopError):
    """A sweep cannot run (no executor, a cluster that cannot be reached, a spec that fails to build)."""


def ray_available() -> bool:
    """Whether Ray can be imported here."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def preflight(spec: SweepSpec) -> None:
    """Build every point's backend option combination once, here, so a bad option or value is one error
    before any work is sent out (the card values were checked when the spec was loaded)."""
    if spec.task.kind == "art-train-eval":
        hardware_aware_training()  # one clear error if this hwloop cannot train hardware-aware
    seen: set[str] = set()
    for point in spec.points():
        key = repr(sorted(point.backend_options().items()))
        if key in seen:
            continue
        seen.add(key)
        point_backend(spec, point)
    for path in (getattr(spec.task, "checkpoint", None), spec.backend.calibration):
        if path is not None and not Path(path).is_file():
            raise SweepError(f"file {path} named by the spec does not exist")


def run_sweep(
    spec: SweepSpec,
    out: Path,
    *,
    executor: Executor = "auto",
    address: str | None = None,
    workers: int | None = None,
    progress: ProgressSink | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    point_fn: PointFn = run_point,
) -> SweepOutcome:
    """Evaluate every point of ``spec`` not yet finished in the dataset ``out``; see the module docstring.

    ``workers``: parallel points (default: this machine's cores / cpus_per_point; on a cluster, its CPUs).
    ``on_row(row)`` is called after each row is stored. ``point_fn`` runs one point (tests swap it).
    """
    if executor == "auto":
        executor = "ray" if ray_available() else "pool"
    if executor == "ray" and not ray_available():
        raise SweepError("executor 'ray' asked for, but Ray is not installed (pip install 'ray>=2.40')")
    if address is not None and executor != "ray":
        raise SweepError("--address needs the Ray executor")
    if address is not None:
        check_reachable(address)  # before anything is written
    preflight(spec)
    store = ResultStore(out, spec)
    finished = store.finished_ids()
    todo = [p for p in spec.points() if p.id not in finished]
    total = len(spec.points())
    outcome = SweepOutcome(total=total, skipped=total - len(todo), executor=executor)
    spec_json = spec.model_dump(mode="json")
    start = time.perf_counter()
    try:
        if todo:
            run = _run_on_ray if executor == "ray" else _run_on_pool
            run(spec, spec_json, todo, store, outcome, progress, on_row, point_fn, address, workers)
    finally:
        outcome.seconds = time.perf_counter() - start
        store.compact()
    return outcome


class _Tracker:
    """Attempts per point, result rows, counts and progress: the part both executors share."""

    def __init__(
        self,
        spec: SweepSpec,
        todo: list[Point],
        store: ResultStore,
        outcome: SweepOutcome,
        progress: ProgressSink | None,
        on_row: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.spec, self.store, self.outcome = spec, store, outcome
        self.queue: deque[Point] = deque(todo)
        self.attempts: dict[str, int] = {}
        self.running = 0
        self.progress, self.on_row = progress, on_row
        if progress is not None:
            progress.start(len(todo))

    def next_point(self) -> Point:
        point = self.queue.popleft()
        self.attempts[point.id] = self.attempts.get(point.id, 0) + 1
        self.running += 1
        return point

    def succeeded(self, point: Point, result: dict[str, Any]) -> None:
        self.running -= 1
        metrics = result["metrics"]
        row = self._row(point, "ok", None)
        row.update({k: metrics.get(k) for k in metrics if k in self.store.schema.names})
        row.update(value=metrics[self.spec.metric], seconds=result["seconds"], worker=result["worker"])
        self.outcome.done += 1  # before storing: the progress report after the store counts it
        self._store(row)

    def errored(self, point: Point, error: BaseException) -> None:
        self.running -= 1
        if self.attempts[point.id] <= self.spec.execution.retries:
            self.outcome.retried += 1
            self.queue.appendleft(point)
            self._report()
            return
        message = _one_line(error)
        self.outcome.failed += 1
        self._store(self._row(point, "failed", message))
        where = f"{point.params} chip {point.chip_seed} repeat {point.repeat}"
        self.outcome.failures.append(f"{where}: {message}")

    def _row(self, point: Point, status: str, error: str | None) -> dict[str, Any]:
        return {
            "point_id": point.id,
            **point.params,
            "chip_seed": point.chip_seed,
            "repeat": point.repeat,
            "status": status,
            "error": error,
            "attempts": self.attempts[point.id],
            "finished_at": datetime.now(UTC),
        }

    def _store(self, row: dict[str, Any]) -> None:
        self.store.append([row])
        if self.on_row is not None:
            self.on_row(row)
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress.update(self.outcome.done, self.outcome.failed, self.running)


def _one_line(error: BaseException) -> str:
    cause = getattr(error, "cause", None)  # a RayTaskError wraps the point's own exception
    err = cause if isinstance(cause, BaseException) else error
    text = " ".join(str(err).split()) or "(no message)"
    return f"{type(err).__name__}: {text}"[:500]


def _run_on_pool(
    spec: SweepSpec,
    spec_json: dict[str, Any],
    todo: list[Point],
    store: ResultStore,
    outcome: SweepOutcome,
    progress: ProgressSink | None,
    on_row: Callable[[dict[str, Any]], None] | None,
    point_fn: PointFn,
    address: str | None,
    workers: int | None,
) -> None:
    """Local process pool (spawned workers); a pool broken by a killed worker is replaced."""
    width = workers or max(1, int((os.cpu_count() or 1) // spec.execution.cpus_per_point))
    track = _Tracker(spec, todo, store, outcome, progress, on_row)
    context = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(max_workers=width, mp_context=context)
    inflight: dict[cf.Future[dict[str, Any]], Point] = {}
    try:
        while track.queue or inflight:
            while track.queue and len(inflight) < width:
                point = track.next_point()
                inflight[pool.submit(point_fn, spec_json, point.model_dump(mode="json"))] = point
            done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
            broken = False
            for future in done:
                point = inflight.pop(future)
                try:
                    track.succeeded(point, future.result())
                except cf.process.BrokenProcessPool as exc:
                    broken = True
                    track.errored(point, exc)
                except Exception as exc:
                    track.errored(point, exc)
            if broken:  # every other in-flight point died with the pool: they count an attempt too
                for future, point in list(inflight.items()):
                    try:
                        track.succeeded(point, future.result())
                    except Exception as exc:
                        track.errored(point, exc)
                inflight.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = cf.ProcessPoolExecutor(max_workers=width, mp_context=context)
    finally:
        for future in inflight:
            future.cancel()
        _stop_pool(pool)


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:  # an interrupted sweep must not leave workers computing
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=5)


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Raise ``SweepError`` unless something accepts TCP connections at ``address`` (HOST:PORT, or
    ray://HOST:PORT): Ray itself would keep retrying an address nobody answers for minutes."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise SweepError(f"--address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379) or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise SweepError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
            f"`ray start --head --port={port}` or check the address"
        ) from None


@contextmanager
def ray_session(address: str | None, workers: int | None) -> Iterator[Any]:
    """Connect to the cluster at ``address`` or start a local one; disconnect / stop it at the end."""
    import ray

    if ray.is_initialized():  # a caller (a test, a notebook) already connected: use that session
        yield ray
        return
    try:
        if address is None:
            ray.init(  # "local": a new cluster on this machine, even when another one runs here
                address="local",
                num_cpus=workers or os.cpu_count(),
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        hint = ""
        if address and "auth" in str(exc).lower():
            hint = " (token authentication: set RAY_AUTH_MODE=token and the cluster's token, RAY_AUTH_TOKEN)"
        raise SweepError(f"cannot start or reach {where}: {' '.join(str(exc).split())[:300]}{hint}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _run_on_ray(
    spec: SweepSpec,
    spec_json: dict[str, Any],
    todo: list[Point],
    store: ResultStore,
    outcome: SweepOutcome,
    progress: ProgressSink | None,
    on_row: Callable[[dict[str, Any]], None] | None,
    point_fn: PointFn,
    address: str | None,
    workers: int | None,
) -> None:
    """Ray tasks declaring ``cpus_per_point`` CPUs; retries are ours (counted), not Ray's."""
    cpus = spec.execution.cpus_per_point
    with ray_session(address, workers) as ray:
        remote = ray.remote(point_fn).options(num_cpus=cpus, max_retries=0, name="hwloop-sweep-point")
        spec_ref = ray.put(spec_json)
        width = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        track = _Tracker(spec, todo, store, outcome, progress, on_row)
        inflight: dict[Any, Point] = {}
        try:
            while track.queue or inflight:
                while track.queue and len(inflight) < width:
                    point = track.next_point()
                    inflight[remote.remote(spec_ref, point.model_dump(mode="json"))] = point
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
                for ref in ready:
                    point = inflight.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # RayTaskError (the point raised), WorkerCrashedError, ...
                        track.errored(point, exc)
                    else:
                        track.succeeded(point, result)
        finally:
            for ref in inflight:
                ray.cancel(ref, force=True)
