"""Sandboxed execution of learner code: a warm fork server and one-shot children.

Process tree, per grading worker::

    worker  (the "parent": builds cases, judges, never runs learner code)
      └── fork server  (a warm interpreter: torch, reference_impl, course.checks and IPython
          │             imported once; single-threaded; it never runs a torch op, so forking is safe)
          └── child    (one per submission attempt, then discarded: own temp dir as cwd, rlimits,
                        stdout/stderr in size-capped files, its own session/process group; it runs
                        the setup cell, the learner's cells and ``check.invoke`` on inputs it is sent)

The fork server is either forked from a pristine warm process (the local workers, see
``runner.zygote_main``: one interpreter start for the whole pool) or started as its own
interpreter (:meth:`ForkServer.start`, for Dask workers and in-process use).

The worker talks to the server over a socket pair (requests: spawn / wait) and to each child over a
socket pair the server hands back with ``SCM_RIGHTS``. What a child sends back is never unpickled:
headers are JSON and a check's outputs are read with ``torch.load(weights_only=True)``.
This is resource isolation (time, memory, output, processes), not a security boundary for files:
a child runs as the grader's user and could read what that user can read.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LEN = struct.Struct("!Q")
_SPAWN_REPLY = struct.Struct("!q")
_MiB = 1 << 20

# Modules the fork server imports before it forks anything (a submission then pays for none of them).
WARM_MODULES = (
    "math",
    "numpy",
    "torch",
    "torch.nn",
    "torch.nn.functional",
    "reference_impl",
    "course.checks",
)


@dataclass(frozen=True)
class Limits:
    """Budgets for one submission (seconds, MiB, bytes)."""

    timeout_cell: float = 120.0  # wall clock per learner cell
    timeout_notebook: float = 600.0  # wall clock for the whole submission, retries included
    memory_mb: int = 2048  # address space a child may add on top of the warm server's
    output_bytes: int = 1 << 20  # stdout / stderr kept per child (the rest is dropped)
    file_bytes: int = 64 << 20  # largest file a child may write (RLIMIT_FSIZE)
    message_bytes: int = 256 << 20  # largest reply a child may send
    run_as: str | None = "nobody"  # grading as root: children run as this user when they can (see
    # can_drop_privileges); None: as the grader's user
    max_processes: int = 256  # RLIMIT_NPROC of that user (a fork bomb stops there)


def clean_error(err: Any) -> dict[str, Any] | None:
    """A child's error report, made safe to use (it comes from a process running learner code)."""
    if err is None:
        return None
    if not isinstance(err, dict):
        return {"ename": "GraderError", "evalue": "the kernel sent a malformed error report", "traceback": []}
    tb = err.get("traceback")
    return {
        "ename": str(err.get("ename", "Exception"))[:200],
        "evalue": str(err.get("evalue", ""))[:5000],
        "traceback": [str(line)[:5000] for line in tb[:200]] if isinstance(tb, list) else [],
    }


class ChildLost(Exception):
    """The child stopped answering: it died, or it was killed after a timeout."""

    def __init__(self, reason: str, *, timed_out: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


# --------------------------------------------------------------------------------------------
# framing


def send_msg(sock: socket.socket, data: bytes) -> None:
    sock.sendall(_LEN.pack(len(data)))
    sock.sendall(data)


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
        else:
            sock.settimeout(None)
        try:
            chunk = sock.recv(min(n - got, 1 << 20))
        except socket.timeout as exc:
            raise TimeoutError from exc
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_msg(sock: socket.socket, *, limit: int, deadline: float | None = None) -> bytes:
    (n,) = _LEN.unpack(_recv_exact(sock, _LEN.size, deadline))
    if n > limit:
        raise ValueError(f"message of {n} bytes is over the limit of {limit}")
    return _recv_exact(sock, n, deadline)


def describe_status(status: int | None) -> str:
    """Say in words how a child ended (``status`` as returned by ``os.waitpid``)."""
    if status is None:
        return "stopped answering"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        why = {
            "SIGSEGV": "crashed with a segmentation fault",
            "SIGBUS": "crashed with a bus error",
            "SIGABRT": "aborted (for example a failed memory allocation)",
            "SIGKILL": "was killed",
            "SIGXCPU": "used up its CPU-time limit",
            "SIGFPE": "crashed with a floating-point exception",
        }.get(name, "was killed by a signal")
        return f"{why} ({name})"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)} (os._exit or a similar call?)"
    return f"ended with wait status {status}"


# --------------------------------------------------------------------------------------------
# parent side


def warm_env() -> dict[str, str]:
    """Environment of a warm interpreter: one thread per process, same import path as here."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        PYTHONHASHSEED="0",
        MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    return env


# jsonschema imports this optional IRI checker if present, which builds a grammar at import time
# (~2 s of CPU in every process that loads nbformat); notebooks have no IRI fields to check.
SKIP_IMPORTS = "import sys; sys.modules.setdefault('rfc3987_syntax', None)"


def start_warm_process(code: str, sock: socket.socket, modules: tuple[str, ...]) -> subprocess.Popen:
    """``python -c CODE FD MODULE...`` with ``sock`` passed as FD (closed here)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", f"{SKIP_IMPORTS}; {code}", str(sock.fileno()), *modules],
        pass_fds=[sock.fileno()],
        env=warm_env(),
        stdin=subprocess.DEVNULL,
    )
    sock.close()
    return proc


class ForkServer:
    """A warm interpreter that forks one child per submission attempt.

    ``modules`` are imported by the server before it forks (course.checks and any extra check
    modules must be among them: children find their checks there).
    """

    def __init__(self, modules: tuple[str, ...] = WARM_MODULES):
        self.modules = tuple(dict.fromkeys(modules))
        self.proc: subprocess.Popen | None = None
        self.ctrl: socket.socket | None = None
        self.info: dict[str, Any] = {}
        self._ready = False
        self._pid: int | None = None  # set when this process forked the server itself

    def start(self) -> "ForkServer":
        """Launch the server (returns at once; :meth:`spawn` waits until it is warm)."""
        if self.proc is not None or self._pid is not None:
            return self
        mine, theirs = socket.socketpair()
        self.proc = start_warm_process("from course.grading.sandbox import serve; serve()", theirs, self.modules)
        self.ctrl = mine
        return self

    def _wait_ready(self, timeout: float = 300.0) -> None:
        if self._ready:
            return
        self.start()
        try:
            self.info = json.loads(recv_msg(self.ctrl, limit=_MiB, deadline=time.monotonic() + timeout))
        except (EOFError, TimeoutError, OSError) as exc:
            self.close()
            raise RuntimeError("the grading fork server failed to start (see its stderr above)") from exc
        self._ready = True

    @classmethod
    def adopt(cls, ctrl: socket.socket, pid: int, modules: tuple[str, ...] = ()) -> "ForkServer":
        """Wrap a server this process forked itself (see :func:`fork_server_here`)."""
        srv = cls(modules)
        srv.ctrl, srv._pid, srv._ready = ctrl, pid, True
        return srv

    def alive(self) -> bool:
        if self._pid is not None:
            try:
                return os.waitpid(self._pid, os.WNOHANG) == (0, 0)
            except ChildProcessError:
                return False
        return self.proc is not None and self.proc.poll() is None

    def spawn(self, workdir: str | Path, limits: Limits) -> "Child":
        """Fork a fresh child whose cwd is ``workdir`` (outputs go to ``workdir/../out``)."""
        self._wait_ready()
        workdir = Path(workdir)
        outdir = workdir.parent / "out"
        outdir.mkdir(parents=True, exist_ok=True)
        n = len(list(outdir.glob("stdout-*.txt")))
        out_path, err_path = outdir / f"stdout-{n}.txt", outdir / f"stderr-{n}.txt"
        req = {
            "op": "spawn",
            "workdir": str(workdir),
            "stdout": str(out_path),
            "stderr": str(err_path),
            "memory_mb": limits.memory_mb,
            "cpu_s": int(limits.timeout_notebook) + 10,
            "output_bytes": limits.output_bytes,
            "file_bytes": limits.file_bytes,
            "run_as": limits.run_as,
            "max_processes": limits.max_processes,
        }
        send_msg(self.ctrl, pickle.dumps(req))
        self.ctrl.settimeout(60)
        msg, fds, _flags, _addr = socket.recv_fds(self.ctrl, _SPAWN_REPLY.size, 1)
        if len(msg) != _SPAWN_REPLY.size or len(fds) != 1:
            raise RuntimeError("the grading fork server did not hand back a child")
        (pid,) = _SPAWN_REPLY.unpack(msg)
        sock = socket.socket(fileno=fds[0])
        return Child(self, pid, sock, out_path, err_path, limits)

    def wait(self, pid: int) -> int | None:
        """Reap ``pid`` (already dead or killed) and return its wait status."""
        try:
            send_msg(self.ctrl, pickle.dumps({"op": "wait", "pid": pid}))
            return json.loads(recv_msg(self.ctrl, limit=_MiB, deadline=time.monotonic() + 30))["status"]
        except (EOFError, TimeoutError, OSError, ValueError):
            return None

    def close(self) -> None:
        if self.ctrl is not None:
            self.ctrl.close()
            self.ctrl = None
        if self._pid is not None:  # a forked server exits when its control socket closes
            for _ in range(100):
                try:
                    if os.waitpid(self._pid, os.WNOHANG) != (0, 0):
                        break
                except ChildProcessError:
                    break
                time.sleep(0.05)
            else:
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
            self._pid = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        self._ready = False

    def __enter__(self) -> "ForkServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class Child:
    """The parent's handle on one child: send a request, get a reply, or lose the child."""

    def __init__(self, server: ForkServer, pid: int, sock: socket.socket, out: Path, err: Path, limits: Limits):
        self.server, self.pid, self.sock = server, pid, sock
        self.out_path, self.err_path = out, err
        self.limits = limits
        self._pos = {"stdout": 0, "stderr": 0}
        self.closed = False

    # -- output files ---------------------------------------------------------------------------
    def take_output(self, cap: int = 64 * 1024) -> dict[str, str]:
        """The text written since the last call, per stream (at most ``cap`` bytes each)."""
        texts = {}
        for name, path in (("stdout", self.out_path), ("stderr", self.err_path)):
            try:
                size = path.stat().st_size
            except OSError:
                texts[name] = ""
                continue
            start = self._pos[name]
            self._pos[name] = size
            if size <= start:
                texts[name] = ""
                continue
            with open(path, "rb") as fh:
                fh.seek(start)
                data = fh.read(min(size - start, cap))
            text = data.decode("utf-8", "replace")
            if size - start > cap:
                text += f"\n... output truncated ({size - start} bytes in all) ...\n"
            texts[name] = text
        return texts

    # -- requests -------------------------------------------------------------------------------
    def _lose(self, timed_out: bool, why: str | None = None) -> ChildLost:
        if timed_out:
            self.kill()
        status = self._reap()
        reason = why or describe_status(status)
        if timed_out and why is None:
            reason = "was stopped at its time limit"
        return ChildLost(reason, timed_out=timed_out)

    def _reap(self) -> int | None:
        if self.closed:
            return None
        self.closed = True
        self.sock.close()
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the child and anything it started
        except (ProcessLookupError, PermissionError):
            pass
        return self.server.wait(self.pid)

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def request(self, msg: dict, timeout: float, *, payload: bool = False) -> tuple[dict, bytes | None]:
        """Send ``msg``; return the JSON header (and the binary payload if the header says so)."""
        if self.closed:
            raise ChildLost("was already gone")
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            send_msg(self.sock, pickle.dumps(msg))
            header = json.loads(recv_msg(self.sock, limit=16 * _MiB, deadline=deadline))
            body = None
            if payload and header.get("payload"):
                body = recv_msg(self.sock, limit=self.limits.message_bytes, deadline=deadline)
        except TimeoutError:
            raise self._lose(True) from None
        except (EOFError, ConnectionError, OSError):
            raise self._lose(False) from None
        except ValueError as exc:  # oversized reply or garbage
            raise self._lose(True, f"sent back something the grader cannot read ({exc})") from None
        if not isinstance(header, dict):
            raise self._lose(True, "sent back something the grader cannot read")
        return header, body

    def close(self) -> None:
        if self.closed:
            return
        try:
            send_msg(self.sock, pickle.dumps({"op": "bye"}))
        except OSError:
            pass
        self._reap()


# --------------------------------------------------------------------------------------------
# server side (runs in the fork server process)

_GRADER: dict[str, Any] = {}  # references taken before any learner code runs


def _vm_size_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def warm(modules) -> dict[str, Any]:
    """Import ``modules`` and prepare what children need, without running any torch op."""
    import importlib

    t0 = time.perf_counter()
    failed = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # report it; the children will report missing checks
            failed[name] = f"{type(exc).__name__}: {exc}"
            print(f"[course grading] could not import {name}: {exc}", file=sys.stderr)
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    _GRADER["torch"] = torch
    checks = sys.modules.get("course.checks")
    if checks is not None:
        _GRADER["REGISTRY"] = getattr(checks, "REGISTRY", {})
        _GRADER["guard"] = getattr(checks, "guard", None)
        _GRADER["CheckFailed"] = getattr(checks, "CheckFailed", AssertionError)
    _GRADER["shell"] = _make_shell()
    return {"pid": os.getpid(), "import_s": time.perf_counter() - t0, "failed": failed}


def serve() -> None:
    """Entry point of a stand-alone fork server: ``python -c '...serve()' FD MODULE...``."""
    ctrl = socket.socket(fileno=int(sys.argv[1]))
    info = warm(sys.argv[2:])
    try:
        send_msg(ctrl, json.dumps(info).encode())
    except OSError:  # the client went away while we warmed up
        os._exit(0)
    server_loop(ctrl)


def fork_server_here(modules: tuple[str, ...] = (), close: tuple[socket.socket, ...] = ()) -> ForkServer:
    """Fork a fork server from this process, which must be warm and must not have run a torch
    op yet (a worker forked from the zygote, first thing). ``close``: sockets of this process
    the server must not keep (the worker's line to the main process)."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            for s in close:
                s.close()
            server_loop(theirs)
        finally:
            os._exit(70)
    theirs.close()
    return ForkServer.adopt(ours, pid, modules)


def server_loop(ctrl: socket.socket) -> None:
    """Serve spawn / wait requests until the control socket closes; never returns."""
    children: set[int] = set()
    try:
        while True:
            try:
                req = pickle.loads(recv_msg(ctrl, limit=_MiB))
            except (EOFError, OSError, ValueError):
                break
            if req["op"] == "spawn":
                ours, theirs = socket.socketpair()
                pid = os.fork()
                if pid == 0:  # the child
                    try:
                        ctrl.close()
                        ours.close()
                        _child_main(theirs, req)
                    finally:
                        os._exit(70)
                theirs.close()
                children.add(pid)
                socket.send_fds(ctrl, [_SPAWN_REPLY.pack(pid)], [ours.fileno()])
                ours.close()
            elif req["op"] == "wait":
                pid = req["pid"]
                status = None
                if pid in children:
                    children.discard(pid)
                    _, status = os.waitpid(pid, 0)
                send_msg(ctrl, json.dumps({"status": status}).encode())
    finally:
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError, PermissionError):
                pass
        os._exit(0)


def _make_shell():
    """An IPython shell (magics, display hook) that records errors instead of printing them."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class GraderShell(InteractiveShell):
        last_error: BaseException | None = None

        def showtraceback(self, exc_tuple=None, *args, **kwargs):  # noqa: D102
            self.last_error = (exc_tuple or sys.exc_info())[1]

        def showsyntaxerror(self, *args, **kwargs):  # noqa: D102
            self.last_error = sys.exc_info()[1]

        def showindentationerror(self):  # noqa: D102
            self.last_error = sys.exc_info()[1]

    cfg = Config()
    cfg.HistoryManager.enabled = False
    shell = GraderShell.instance(config=cfg)
    shell.run_cell("pass", store_history=False)  # warm the compiler / display machinery
    return shell


class _CappedStream(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` of a child: writes through, drops what is over the cap."""

    def __init__(self, fd: int, cap: int, name: str):
        self.fd, self.cap, self.written, self.noted = fd, cap, 0, False
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.fd

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            s = str(s)
        data = s.encode("utf-8", "replace")
        room = self.cap - self.written
        if room <= 0:
            if not self.noted:
                self.noted = True
                self._raw(b"\n... output limit reached: the rest was dropped ...\n")
            return len(s)
        self._raw(data[:room])
        self.written += min(len(data), room)
        return len(s)

    def _raw(self, data: bytes) -> None:
        try:
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
        except OSError:
            pass

    def flush(self) -> None:
        pass


def _set_limits(req: dict) -> None:
    base = _vm_size_bytes()
    mem = base + int(req["memory_mb"]) * _MiB
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    cpu = int(req["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    fsize = int(req["file_bytes"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _world_readable(path: str) -> bool:
    """Can any user read ``path`` (every directory on the way searchable by others)?"""
    import stat

    try:
        p = Path(path).resolve()
        if not os.stat(p).st_mode & stat.S_IROTH:
            return False
        return all(os.stat(d).st_mode & stat.S_IXOTH for d in (p if p.is_dir() else p.parent, *p.parents))
    except OSError:
        return False


def can_drop_privileges() -> bool:
    """Whether children may run as another user here: root, and Python's library, site-packages
    and this course's packages readable by others (not so with a Python installed under /root:
    a child could not import what it had not imported yet)."""
    if os.geteuid() != 0:
        return False
    import sysconfig

    import course

    paths = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.add(os.path.dirname(os.path.dirname(course.__file__)))
    return all(_world_readable(p) for p in paths)


def _drop_privileges(req: dict) -> None:
    """As root, become ``run_as`` (it cannot signal the grader's processes nor write the course)."""
    if not req.get("run_as") or not can_drop_privileges():
        return
    import pwd

    try:
        pw = pwd.getpwnam(req["run_as"])
    except KeyError:
        return
    os.chown(req["workdir"], pw.pw_uid, pw.pw_gid)
    n = int(req.get("max_processes") or 256)
    resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    os.environ.update(HOME=req["workdir"], USER=pw.pw_name, LOGNAME=pw.pw_name, MPLCONFIGDIR=req["workdir"])


def _child_main(sock: socket.socket, req: dict) -> None:
    os.setsid()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over RLIMIT_FSIZE fails instead of killing
    os.chdir(req["workdir"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(f, fd)
        os.close(f)
    os.close(null)
    # nothing else is inherited: a learner's code must not reach any other process's socket
    keep = sock.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, max(keep + 2, resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
    cap = int(req["output_bytes"])
    sys.stdout = _CappedStream(1, cap, "<stdout>")
    sys.stderr = _CappedStream(2, cap, "<stderr>")
    _set_limits(req)
    _drop_privileges(req)
    _die_with_parent()  # after the uid change, which clears it
    import random

    torch = _GRADER["torch"]
    random.seed(0)
    torch.manual_seed(0)
    try:
        import numpy

        numpy.random.seed(0)
    except ImportError:
        pass
    _child_loop(sock, _GRADER["shell"])


def _describe(exc: BaseException) -> dict[str, Any]:
    """ename / evalue / traceback lines of a learner's exception, without the grader's frames."""
    try:
        evalue = str(exc)
    except Exception:  # a learner's exception whose __str__ fails
        evalue = "<unprintable>"
    if len(evalue) > 4000:
        evalue = evalue[:4000] + " ..."
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if "IPython" not in f.filename and not f.filename.endswith("sandbox.py")
    ][-20:]
    lines = traceback.format_list(frames)
    if isinstance(exc, SyntaxError):
        lines += traceback.format_exception_only(type(exc), exc)
    else:
        lines.append(f"{type(exc).__name__}: {evalue}\n")
    return {"ename": type(exc).__name__, "evalue": evalue, "traceback": lines}


def _reply(sock: socket.socket, header: dict, payload: bytes | None = None) -> None:
    if payload is not None:
        header["payload"] = True
    send_msg(sock, json.dumps(header).encode())
    if payload is not None:
        send_msg(sock, payload)


def _child_loop(sock: socket.socket, shell) -> None:
    torch = _GRADER["torch"]
    while True:
        try:
            req = pickle.loads(recv_msg(sock, limit=1 << 34))
        except (EOFError, OSError):
            os._exit(0)
        op = req.get("op")
        if op == "bye":
            os._exit(0)
        if op == "exec":
            shell.last_error = None
            try:
                result = shell.run_cell(req["source"], store_history=False)
                err = shell.last_error or result.error_before_exec or result.error_in_exec
            except BaseException as exc:  # noqa: BLE001 (the learner's code may raise anything)
                err = exc
            header = {"op": "exec", "error": _describe(err) if err is not None else None}
            _reply(sock, header)
        elif op == "probe":
            missing = object()
            obj = shell.user_ns.get(req["name"], missing)
            _reply(sock, {
                "defined": obj is not missing,
                "is_none": obj is None,
                "is_class": isinstance(obj, type),
                "callable": callable(obj),
                "type": type(obj).__name__,
            })
        elif op == "invoke":
            _invoke(sock, shell, req, torch)
        else:
            _reply(sock, {"op": "?", "error": {"ename": "GraderError", "evalue": f"unknown op {op}", "traceback": []}})


def _invoke(sock: socket.socket, shell, req: dict, torch) -> None:
    name = req["name"]
    registry = _GRADER.get("REGISTRY", {})
    guard = _GRADER.get("guard")
    check_failed = _GRADER.get("CheckFailed", AssertionError)
    check = registry.get(name)
    if check is None or guard is None:
        _reply(sock, {"ok": False, "kind": "grader", "message": f"no check named {name!r} in the sandbox"})
        return
    missing = object()
    obj = shell.user_ns.get(name, missing)
    if obj is missing:
        _reply(sock, {"ok": False, "kind": "missing"})
        return
    inputs = torch.load(io.BytesIO(req["inputs"]), weights_only=False)  # made by the parent
    torch.manual_seed(int(req.get("seed", 0)))
    try:
        with guard(check):
            got = check.invoke(obj, inputs)
    except check_failed as exc:
        _reply(sock, {"ok": False, "kind": "check", "message": str(exc)})
        return
    except BaseException as exc:  # noqa: BLE001 (SystemExit, KeyboardInterrupt... in learner code)
        _reply(sock, {"ok": False, "kind": "error", "error": _describe(exc)})
        return
    buf = io.BytesIO()
    try:
        torch.save({"got": got, "inputs_after": inputs}, buf)
    except BaseException as exc:  # noqa: BLE001
        _reply(sock, {"ok": False, "kind": "unsendable", "type": type(got).__name__, "detail": str(exc)[:500]})
        return
    _reply(sock, {"ok": True, "type": type(got).__name__}, buf.getvalue())
