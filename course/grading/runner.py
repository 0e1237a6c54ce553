"""Grade many submissions in parallel: worker processes here, or a Dask cluster.

Locally, one warm "zygote" interpreter (torch, reference_impl, course.checks, IPython imported
once, no torch op run) forks the grading workers; each worker first forks its own fork server
(still pristine), then grades jobs: it builds and judges cases, its server forks the sandboxed
children. On a Dask cluster each Dask worker runs the same machinery with one grading worker.
A job carries everything a worker needs (the submission's notebook bytes, the source spec, the
limits), so a Dask worker on another machine needs no access to the course directory. The main
process never imports torch and is the only writer of the gradebook, as results arrive.
"""

from __future__ import annotations

import atexit
import json
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable, Iterator

from .notebook import Prepared, SourceSpec, Ungradable, error_output, placeholder, prepare, resolve_checks, stream
from .sandbox import WARM_MODULES, ForkServer, Limits


@dataclass
class GradeJob:
    student: str
    assignment: str
    spec: SourceSpec
    files: dict[str, bytes]  # the submission folder's notebooks, name -> bytes
    limits: Limits = field(default_factory=Limits)
    extra_files: dict[str, bytes] = field(default_factory=dict)  # non-notebook files of the source folder
    modules: tuple[str, ...] = WARM_MODULES  # imported by workers and fork servers (checks live there)
    paths: tuple[str, ...] = ()  # extra sys.path entries for those modules

    @property
    def key(self) -> str:
        return f"{self.student}/{self.assignment}"


@dataclass
class GradeResult:
    student: str
    assignment: str
    notebook: str  # notebook id
    state: str  # "graded" | "ungradable"
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)  # ItemResult as dicts, in notebook order
    notebook_json: str = ""  # the autograded notebook (before nbgrader's post-processing)
    filename: str = ""
    seconds: float = 0.0
    children: int = 0
    worker: str = ""

    def to_log(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("notebook_json")
        return d


# ------------------------------------------------------------------------------------------------
# worker side

_local = threading.local()


def _setup_process(modules: tuple[str, ...], paths: tuple[str, ...]) -> None:
    for p in paths:
        if p not in sys.path:
            sys.path.insert(0, p)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


_imported: set[str] = set()


def import_modules(modules: tuple[str, ...]) -> None:
    """Import the check modules here too: the parent judges with the same registry."""
    import importlib

    for name in modules:
        if name in _imported:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            print(f"[course grading] could not import {name}: {exc}", file=sys.stderr)
        _imported.add(name)


def fork_server(modules: tuple[str, ...], paths: tuple[str, ...] = ()) -> ForkServer:
    """This thread's warm fork server (started on first use, restarted if it died)."""
    _setup_process(modules, paths)
    srv: ForkServer | None = getattr(_local, "server", None)
    if srv is not None and (not srv.alive() or srv.modules != tuple(dict.fromkeys(modules))):
        srv.close()
        srv = None
    if srv is None:
        srv = ForkServer(modules).start()
        _local.server = srv
        atexit.register(srv.close)
    return srv


def _fill(prepared: Prepared, rec) -> Any:
    nb = prepared.nb
    for idx, run in rec.cells.items():
        cell = nb.cells[idx]
        cell.outputs = run.outputs
        cell.execution_count = run.execution_count or None
    for step in prepared.steps:
        if step.kind != "check":
            continue
        item = rec.items[step.grade_id]
        cell = nb.cells[step.cell]
        cell.execution_count = rec.counts.get(step.cell)
        cell.outputs = (
            [stream("stdout", item.message + "\n")] if item.passed else [error_output("CheckFailed", item.message, [item.message])]
        )
    return nb


def ungradable_result(job: GradeJob, reason: str, t0: float, warnings: list[str] | None = None) -> GradeResult:
    import nbformat

    nb = placeholder(job.spec, reason)
    items = [
        {"grade_id": c.grade_id, "name": c.check, "passed": False, "message": f"{c.grade_id}: not graded: {reason}"}
        for c in job.spec.cells
        if c.kind == "test"
    ]
    return GradeResult(
        job.student, job.assignment, job.spec.notebook, "ungradable", reason, warnings or [], items,
        nbformat.writes(nb), seconds=time.monotonic() - t0, worker=f"{socket.gethostname()}:{os.getpid()}",
    )


def grade_job(job: GradeJob) -> GradeResult:
    """Grade one submission (runs in a worker; never raises for a faulty submission)."""
    import nbformat

    from .execute import execute

    t0 = time.monotonic()
    _setup_process(job.modules, job.paths)
    import_modules(job.modules)
    from .judge import check_names_for

    spec = resolve_checks(job.spec, check_names_for(job.assignment))
    job = replace(job, spec=spec)
    try:
        prepared = prepare(job.files, job.spec)
    except Ungradable as exc:
        return ungradable_result(job, exc.reason, t0)
    except Exception as exc:  # noqa: BLE001 (a notebook that breaks the reader is still a recorded state)
        return ungradable_result(job, f"the notebook could not be read: {type(exc).__name__}: {exc}", t0)
    srv = fork_server(job.modules, job.paths)
    try:
        rec = execute(prepared, srv, job.limits, job.extra_files)
    except Exception as exc:  # noqa: BLE001 (grader trouble: record it, restart the server next time)
        srv.close()
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return ungradable_result(job, f"internal grader error: {detail}", t0, prepared.warnings)
    if rec.setup_error is not None:
        return ungradable_result(job, f"the setup cell failed in the grading sandbox: {rec.setup_error}", t0, prepared.warnings)
    nb = _fill(prepared, rec)
    order = [grade_id for grade_id in (s.grade_id for s in prepared.steps) if grade_id in rec.items]
    items = [asdict(rec.items[g]) for g in dict.fromkeys(order)]
    return GradeResult(
        job.student, job.assignment, job.spec.notebook, "graded", "", prepared.warnings, items,
        nbformat.writes(nb), prepared.filename, time.monotonic() - t0, rec.children,
        f"{socket.gethostname()}:{os.getpid()}",
    )


# ------------------------------------------------------------------------------------------------
# executors: each yields (job, GradeResult | BaseException) as results arrive


class InlineExecutor:
    """Grade in this process (one fork server here); for ``course check`` and debugging."""

    def run(self, jobs: Iterable[GradeJob]) -> Iterator[tuple[GradeJob, Any]]:
        for job in jobs:
            try:
                yield job, grade_job(job)
            except Exception as exc:  # noqa: BLE001
                yield job, exc

    def close(self) -> None:
        srv = getattr(_local, "server", None)
        if srv is not None:
            srv.close()
            _local.server = None


def zygote_main() -> None:
    """Entry point of the zygote: ``python -c '...zygote_main()' FD MODULE...``.

    It warms up once (imports torch, the checks, IPython; runs no torch op), then forks one
    grading worker per request and hands the worker's socket back to the main process.
    """
    from . import sandbox

    ctrl = socket.socket(fileno=int(sys.argv[1]))
    info = sandbox.warm(sys.argv[2:])
    try:
        sandbox.send_msg(ctrl, json.dumps(info).encode())
    except OSError:  # the main process went away while we warmed up
        os._exit(0)
    while True:
        try:
            pickle.loads(sandbox.recv_msg(ctrl, limit=1 << 20))
        except (EOFError, OSError, ValueError):
            os._exit(0)
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            try:
                ctrl.close()
                ours.close()
                _worker_main(theirs, tuple(sys.argv[2:]))
            finally:
                os._exit(70)
        theirs.close()
        socket.send_fds(ctrl, [struct.pack("!q", pid)], [ours.fileno()])
        ours.close()
        try:  # reap workers that ended
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass


def _worker_main(sock: socket.socket, modules: tuple[str, ...]) -> None:
    """A grading worker (forked from the zygote): fork its own server first, then grade jobs."""
    from . import sandbox

    srv = sandbox.fork_server_here(modules, close=(sock,))  # while this process has run no torch op
    _local.server = srv
    torch = sandbox._GRADER["torch"]
    torch.set_num_threads(1)
    for name in modules:
        _imported.add(name)
    while True:
        try:
            job = pickle.loads(sandbox.recv_msg(sock, limit=1 << 34))
        except (EOFError, OSError):
            break
        try:
            result: Any = grade_job(job)
        except BaseException as exc:  # noqa: BLE001 (report it; the main process records it)
            result = RuntimeError(f"{type(exc).__name__}: {exc}")
        try:
            sandbox.send_msg(sock, pickle.dumps(result))
        except OSError:
            break
    srv.close()
    os._exit(0)


class LocalExecutor:
    """``n`` grading workers on this machine, all forked from one warm zygote.

    One interpreter start (and one ``import torch``) for the whole pool: each worker is a fork of
    the zygote and forks its own fork server before it runs any torch op. The main process never
    imports torch. A worker that dies (not a learner's child: the worker itself) is replaced and its
    job retried once.
    """

    def __init__(self, n: int, modules: tuple[str, ...] = WARM_MODULES, paths: tuple[str, ...] = (), job_timeout: float | None = None):
        self.n, self.modules, self.paths = n, tuple(dict.fromkeys(modules)), paths
        self.job_timeout = job_timeout
        self.zygote = None
        self.ctrl: socket.socket | None = None
        self.workers: dict[socket.socket, int] = {}  # socket -> pid

    def _start(self) -> None:
        from . import sandbox

        if self.zygote is not None:
            return
        for p in self.paths:
            if p not in sys.path:
                sys.path.insert(0, p)
        mine, theirs = socket.socketpair()
        code = "from course.grading.runner import zygote_main; zygote_main()"
        self.zygote = sandbox.start_warm_process(code, theirs, self.modules)
        self.ctrl = mine
        try:
            json.loads(sandbox.recv_msg(mine, limit=1 << 20, deadline=time.monotonic() + 300))
        except (EOFError, TimeoutError, OSError) as exc:
            self.close()
            raise RuntimeError("the grading zygote failed to start (see its stderr above)") from exc

    def warm(self) -> None:
        """Start the zygote and the workers now (they are otherwise started by :meth:`run`)."""
        self._start()
        while len(self.workers) < self.n:
            self._new_worker()

    def _new_worker(self) -> socket.socket:
        from . import sandbox

        sandbox.send_msg(self.ctrl, pickle.dumps({"op": "worker"}))
        self.ctrl.settimeout(60)
        msg, fds, _flags, _addr = socket.recv_fds(self.ctrl, 8, 1)
        (pid,) = struct.unpack("!q", msg)
        sock = socket.socket(fileno=fds[0])
        self.workers[sock] = pid
        return sock

    def _drop(self, sock: socket.socket) -> None:
        pid = self.workers.pop(sock, None)
        sock.close()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def run(self, jobs: Iterable[GradeJob]) -> Iterator[tuple[GradeJob, Any]]:
        from . import sandbox

        queue = list(jobs)
        if not queue:
            return
        self._start()
        queue.reverse()  # pop() from the end keeps the given order
        while len(self.workers) < min(self.n, len(queue)):
            self._new_worker()
        idle = list(self.workers)
        busy: dict[socket.socket, tuple[GradeJob, float]] = {}
        tries: dict[int, int] = {}
        while queue or busy:
            while queue and idle:
                sock = idle.pop()
                job = queue.pop()
                limit = self.job_timeout or job.limits.timeout_notebook + 300
                try:
                    sandbox.send_msg(sock, pickle.dumps(job))
                    busy[sock] = (job, time.monotonic() + limit)
                except OSError:
                    queue.append(job)
                    self._drop(sock)
                    idle.append(self._new_worker())
            if not busy:
                continue
            now = time.monotonic()
            wait_s = max(0.05, min(d for _, d in busy.values()) - now)
            ready, _, _ = select.select(list(busy), [], [], wait_s)
            for sock in ready:
                job, deadline = busy.pop(sock)
                try:
                    result = pickle.loads(sandbox.recv_msg(sock, limit=1 << 34, deadline=time.monotonic() + 600))
                except (EOFError, OSError, TimeoutError, ValueError) as exc:
                    self._drop(sock)
                    idle.append(self._new_worker())
                    tries[id(job)] = tries.get(id(job), 0) + 1
                    if tries[id(job)] < 2:
                        queue.append(job)  # the worker died: try once more in a fresh one
                    else:
                        yield job, RuntimeError(f"the grading worker died twice ({type(exc).__name__})")
                    continue
                idle.append(sock)
                yield job, result
            now = time.monotonic()
            for sock, (job, deadline) in list(busy.items()):
                if now > deadline:
                    busy.pop(sock)
                    self._drop(sock)
                    idle.append(self._new_worker())
                    yield job, RuntimeError("the grading worker did not answer in time")

    def close(self) -> None:
        pids = list(self.workers.values())
        for sock in list(self.workers):
            self.workers.pop(sock)
            sock.close()  # an idle worker exits on EOF (and its fork server with it)
        if self.ctrl is not None:
            self.ctrl.close()
            self.ctrl = None
        if self.zygote is not None:
            try:
                self.zygote.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.zygote.kill()
                self.zygote.wait()
            self.zygote = None
        deadline = time.monotonic() + 3
        for pid in pids:  # a worker still busy (interrupted run) is stopped
            while True:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    break
                time.sleep(0.05)


def _host_executor(modules: tuple[str, ...], paths: tuple[str, ...]) -> "LocalExecutor":
    """This thread's one-worker LocalExecutor (used on Dask workers)."""
    ex = getattr(_local, "executor", None)
    if ex is None or ex.modules != tuple(dict.fromkeys(modules)):
        if ex is not None:
            ex.close()
        ex = LocalExecutor(1, modules, paths)
        _local.executor = ex
        atexit.register(ex.close)
    return ex


def dask_warm(modules: tuple[str, ...] = WARM_MODULES, paths: tuple[str, ...] = ()) -> str:
    """Run on every Dask worker before the jobs: start its zygote and grading worker."""
    _host_executor(modules, paths).warm()
    return f"{socket.gethostname()}:{os.getpid()}"


def dask_grade(job: GradeJob) -> GradeResult:
    """A Dask task: grade ``job`` in this host's zygote-forked worker (the Dask worker process
    itself never imports torch nor runs learner code)."""
    ex = _host_executor(job.modules, job.paths)
    ((_, result),) = list(ex.run([job]))
    if isinstance(result, BaseException):
        raise result
    return result


class DaskExecutor:
    """Jobs as tasks of a Dask distributed cluster (``--scheduler tcp://host:port``).

    Each Dask worker runs the same machinery as a local pool of one: a zygote, one grading
    worker forked from it, and that worker's fork server.
    """

    def __init__(self, address: Any, modules: tuple[str, ...] = WARM_MODULES, paths: tuple[str, ...] = ()):
        from distributed import Client

        self.client = address if isinstance(address, Client) else Client(address)
        self._own = not isinstance(address, Client)
        self.modules, self.paths = tuple(dict.fromkeys(modules)), paths

    def run(self, jobs: Iterable[GradeJob]) -> Iterator[tuple[GradeJob, Any]]:
        from distributed import as_completed

        jobs = list(jobs)
        if not jobs:
            return
        self.client.run(dask_warm, self.modules, self.paths)
        futures = {}
        for job in jobs:
            fut = self.client.submit(dask_grade, job, pure=False, key=f"grade-{job.student}-{job.assignment}-{time.time_ns()}")
            futures[fut.key] = (fut, job)
        for fut in as_completed([f for f, _ in futures.values()]):
            job = futures[fut.key][1]
            try:
                yield job, fut.result()
            except Exception as exc:  # noqa: BLE001
                yield job, exc
            fut.release()

    def close(self) -> None:
        if self._own:
            self.client.close()


def make_executor(workers: int | None, scheduler: Any = None, modules: tuple[str, ...] = WARM_MODULES, paths: tuple[str, ...] = ()):
    if scheduler:
        return DaskExecutor(scheduler, modules, paths)
    n = (os.cpu_count() or 1) if workers is None else workers
    if n <= 0:
        return InlineExecutor()
    return LocalExecutor(n, modules, paths)
