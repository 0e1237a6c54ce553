"""The fork server and its children: isolation, limits, deaths, and no fork-after-OpenMP hang."""

from __future__ import annotations

import os
import time

import pytest

from course.grading.sandbox import ChildLost, ForkServer, Limits, can_drop_privileges

LIMITS = Limits(timeout_cell=5, timeout_notebook=30, memory_mb=512, output_bytes=10_000)


@pytest.fixture(scope="module")
def server():
    srv = ForkServer(("torch", "numpy", "course.checks")).start()
    yield srv
    srv.close()


@pytest.fixture
def child(server, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    c = server.spawn(work, LIMITS)
    yield c
    c.close()


def run(child, source, timeout=5.0):
    header, _ = child.request({"op": "exec", "source": source}, timeout)
    return header["error"], child.take_output()


def test_children_are_fresh_single_threaded_and_in_their_own_dir(server, tmp_path):
    first = server.spawn(tmp_path, LIMITS)
    run(first, "secret = 42")
    first.close()
    second = server.spawn(tmp_path, LIMITS)
    err, out = run(second, "import os, torch\nprint(os.getcwd(), torch.get_num_threads())\nprint(secret)")
    second.close()
    assert out["stdout"].split() == [str(tmp_path), "1"]
    assert err["ename"] == "NameError"  # nothing leaks from one child to the next


def test_torch_work_in_children_does_not_hang(server, tmp_path):
    # fork after OpenMP use can deadlock: the server never runs a torch op, children do
    for _ in range(3):
        c = server.spawn(tmp_path, LIMITS)
        err, out = run(c, "import torch\nx = torch.randn(400, 400)\ny = (x @ x).relu().sum()\nprint(float(y) > 0)", timeout=20)
        c.close()
        assert err is None and out["stdout"].strip() == "True"


def test_magics_and_errors_are_recorded_and_execution_goes_on(child):
    err, _ = run(child, "%time a = 1")
    assert err is None
    err, _ = run(child, "1 / 0")
    assert err["ename"] == "ZeroDivisionError" and any("1 / 0" in line for line in err["traceback"])
    err, _ = run(child, "def broken(:")
    assert err["ename"] == "SyntaxError"
    err, out = run(child, "print(a + 1)")
    assert err is None and out["stdout"] == "2\n"


def test_memory_limit(child):
    err, _ = run(child, "import torch\nbig = torch.ones(40_000, 10_000)")  # 1.6 GB > 512 MB
    assert err is not None and "allocate" in err["evalue"]
    err, _ = run(child, "hog = []\nwhile True:\n    hog.append(bytearray(20_000_000))")
    assert err["ename"] == "MemoryError"
    err, out = run(child, "del hog\nprint('still alive')")
    assert out["stdout"] == "still alive\n"


def test_output_is_capped(child):
    err, out = run(child, "for _ in range(10_000):\n    print('x' * 100)")
    assert err is None
    assert 10_000 <= len(out["stdout"]) < 11_000
    assert "output limit reached" in out["stdout"]


def test_timeout_kills_the_child(child):
    t0 = time.monotonic()
    with pytest.raises(ChildLost) as info:
        run(child, "while True:\n    pass", timeout=1.0)
    assert info.value.timed_out and time.monotonic() - t0 < 5


@pytest.mark.parametrize("source, reason", [
    ("import os\nos._exit(7)", "exited with status 7"),
    ("import ctypes\nctypes.string_at(0)", "segmentation fault"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "was killed (SIGKILL)"),
])
def test_deaths_are_described(child, source, reason):
    with pytest.raises(ChildLost) as info:
        run(child, source)
    assert not info.value.timed_out and reason in info.value.reason


def test_sys_exit_does_not_kill(child):
    err, _ = run(child, "import sys\nsys.exit(3)")
    assert err["ename"] == "SystemExit"
    err, out = run(child, "print('alive')")
    assert out["stdout"] == "alive\n"


def test_grandchildren_die_with_the_child(server, tmp_path):
    c = server.spawn(tmp_path, LIMITS)
    err, out = run(c, "import subprocess\np = subprocess.Popen(['sleep', '60'])\nprint(p.pid)")
    pid = int(out["stdout"])
    with pytest.raises(ChildLost):
        run(c, "while True: pass", timeout=0.5)
    time.sleep(0.2)
    import os

    with pytest.raises(ProcessLookupError):
        for _ in range(50):  # reaped by init once killed
            os.kill(pid, 0)
            time.sleep(0.1)


def test_child_inherits_no_other_descriptor(child):
    err, out = run(child, "import os\nfds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
                          "print([(f, os.readlink(f'/proc/self/fd/{f}')) for f in fds if os.path.exists(f'/proc/self/fd/{f}')])")
    assert err is None
    links = dict(eval(out["stdout"]))
    sockets = [f for f, target in links.items() if target.startswith("socket:")]
    assert len(sockets) == 1  # its own line to the parent, nothing else (no server or main socket)
    assert all(f in (0, 1, 2) or f in sockets for f in links)


@pytest.mark.skipif(not can_drop_privileges(), reason="children change user only as root, with a Python others can read")
def test_as_root_children_cannot_touch_the_grader(child, tmp_path):
    err, out = run(child, "import os\nprint(os.getuid())\nos.kill(os.getppid(), 9)")
    assert out["stdout"].strip() == "65534" and err["ename"] == "PermissionError"
    err, _ = run(child, f"open({str(tmp_path.parent / 'x.txt')!r}, 'w')")
    assert err["ename"] == "PermissionError"
    err, out = run(child, "open('mine.txt', 'w').write('ok')\nprint(open('mine.txt').read())")
    assert err is None and out["stdout"] == "ok\n"
