"""Benchmark: plain sequential `nbgrader autograde` against `course grade` on the same batch.

    python bench/grading_bench.py            # every assignment in solutions/, >= 8 submissions
    python bench/grading_bench.py --quick    # smoke test: first assignment, 2 students
    python bench/grading_bench.py --course fake --quick   # the grading tests' tiny fake course

It builds a temporary course directory (this repo's nbgrader_config.py and solutions/), releases
every assignment, makes each student submit the solution notebook of every assignment (every
fourth student, from the second on, submits the untouched student version: a wrong one), then grades the same
batch twice, from scratch: with `nbgrader autograde ASSIGNMENT` (sequential, one call per
assignment, as an instructor runs it) and with `course grade` (all cores). It prints seconds per
submission, the ratio, whether both agree on every score, and (full mode) how long `course grade`
takes for one complete submission of all assignments (start-up included).
Targets on a 2-core machine: ratio >= 3x; one complete submission <= 40 s.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAKE_DIR = REPO / "tests" / "grading"


def env_for(course: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    if course == "fake":
        env["PYTHONPATH"] = os.pathsep.join([str(FAKE_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["COURSE_GRADING_CHECKS"] = "fake_checks"
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout[-4000:]}")
    return time.perf_counter() - t0


def build(root: Path, course: str, assignments: list[str] | None, n_students: int | None, env) -> tuple[list[str], list[str]]:
    import nbformat

    root.mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    if course == "fake":
        sys.path.insert(0, str(FAKE_DIR))
        import fake_course

        fake_course.make_course(root)
    else:
        shutil.copytree(REPO / "solutions", root / "solutions")
    names = sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir() and any(p.glob("*.ipynb")))
    if assignments:
        names = [a for a in names if a in assignments]
    if not names:
        sys.exit("no assignment to benchmark (is solutions/ empty?)")
    for a in names:
        run([sys.executable, "-m", "nbgrader", "generate_assignment", a, "--force"], root, env)
    n = n_students or max(2, math.ceil(8 / len(names)))
    students = [f"s{i:02d}" for i in range(n)]
    for i, s in enumerate(students):
        for a in names:
            src = root / "solutions" / a / f"{a}.ipynb"
            if i % 4 == 1:
                src = root / "exercises" / a / f"{a}.ipynb"  # a wrong one: nothing answered
            dest = root / "submitted" / s / a
            dest.mkdir(parents=True)
            nb = nbformat.read(str(src), as_version=4)
            nbformat.write(nb, str(dest / f"{a}.ipynb"))
            (dest / "timestamp.txt").write_text("2030-01-01 12:00:00")
    return names, students


def scores(root: Path) -> dict[tuple[str, str], float]:
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for a in gb.assignments:
            for sub in a.submissions:
                out[(a.name, sub.student.id)] = round(sub.score, 6)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="first assignment, 2 students, no single-submission timing")
    p.add_argument("--course", choices=("repo", "fake"), default="repo")
    p.add_argument("--assignment", action="append", help="only these assignments (repeatable)")
    p.add_argument("--students", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="course grade --workers (default: one per core)")
    p.add_argument("--keep", action="store_true", help="keep the temporary course directories")
    args = p.parse_args(argv)
    env = env_for(args.course)
    tmp = Path(tempfile.mkdtemp(prefix="grading-bench-"))
    try:
        base = tmp / "base"
        assignments = args.assignment
        if args.quick and not assignments:
            src = FAKE_DIR if args.course == "fake" else REPO
            found = sorted(p.name for p in (src / "solutions").iterdir()) if (src / "solutions").is_dir() else []
            assignments = found[:1] or None
        names, students = build(base, args.course, assignments, args.students or (2 if args.quick else None), env)
        n_sub = len(names) * len(students)
        print(f"batch: {len(students)} students x {len(names)} assignments = {n_sub} submissions "
              f"({', '.join(names)}); {os.cpu_count()} cores")

        theirs = tmp / "nbgrader"
        shutil.copytree(base, theirs)
        t_nb = sum(run([sys.executable, "-m", "nbgrader", "autograde", a, "--force"], theirs, env) for a in names)

        ours = tmp / "course"
        shutil.copytree(base, ours)
        cmd = [sys.executable, "-m", "course.cli", "--course-dir", str(ours), "grade", "--force", "--no-progress"]
        if args.workers is not None:
            cmd += ["--workers", str(args.workers)]
        t_ours = run(cmd, ours, env)

        print(f"nbgrader autograde (sequential): {t_nb:7.1f} s  = {t_nb / n_sub:5.2f} s/submission")
        print(f"course grade                   : {t_ours:7.1f} s  = {t_ours / n_sub:5.2f} s/submission")
        print(f"ratio: {t_nb / t_ours:.1f}x faster (target >= 3x on 2 cores)")
        a, b = scores(theirs), scores(ours)
        diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
        print("scores: identical" if not diff else f"scores differ (nbgrader, course): {diff}")

        if not args.quick:
            one = tmp / "one"
            shutil.copytree(base, one)
            t_one = run([sys.executable, "-m", "course.cli", "--course-dir", str(one), "grade", "--student", students[0],
                         "--force", "--no-progress"], one, env)
            print(f"one complete submission ({len(names)} assignments, start-up included): {t_one:.1f} s (target <= 40 s)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
