"""The course directory as nbgrader sees it: config, folders, the gradebook URL, nbgrader's CLI."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

log = logging.getLogger("course.grading")


def nbgrader_env() -> dict[str, str]:
    """The environment for nbgrader's CLI: this interpreter's bin first (it shells out to
    ``jupyter`` and ``alembic``)."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return env


def load_config(root: Path) -> Config:
    """``nbgrader_config.py`` of the course directory (an empty config when there is none)."""
    cfg = Config()
    path = root / "nbgrader_config.py"
    if path.exists():
        cfg.merge(PyFileConfigLoader(path.name, path=str(root)).load_config())
    return cfg


@dataclass
class Course:
    """A course directory (by default the repository root)."""

    root: Path
    config: Config = field(default_factory=Config)

    @classmethod
    def at(cls, root: str | Path | None = None) -> "Course":
        root = Path(root or os.getcwd()).resolve()
        config = load_config(root)
        config.CourseDirectory.root = str(root)  # nbgrader_config.py says "." (relative to the cwd)
        return cls(root=root, config=config)

    @property
    def coursedir(self) -> CourseDirectory:
        cd = CourseDirectory(config=self.config)
        cd.root = str(self.root)
        return cd

    @property
    def db_url(self) -> str:
        return self.coursedir.db_url

    @property
    def course_id(self) -> str:
        return self.coursedir.course_id

    def path(self, step: str, student: str, assignment: str) -> Path:
        cd = self.coursedir
        folder = getattr(cd, f"{step}_directory")
        return Path(cd.format_path(folder, student, assignment))

    def source_notebook(self, assignment: str) -> Path:
        folder = self.path("source", ".", assignment)
        preferred = folder / f"{assignment}.ipynb"
        if preferred.exists():
            return preferred
        found = sorted(p for p in folder.glob("*.ipynb"))
        if len(found) != 1:
            raise FileNotFoundError(f"expected one notebook in {folder}, found {len(found)}")
        return found[0]

    def assignments(self) -> list[str]:
        """Every assignment of the source directory (folders holding a notebook)."""
        src = self.path("source", ".", ".").resolve()
        if not src.is_dir():
            return []
        return sorted(p.name for p in src.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))

    def students(self, assignment: str) -> list[str]:
        """Students with a submitted/<student>/<assignment>/ folder."""
        sub = Path(self.coursedir.format_path(self.coursedir.submitted_directory, ".", ".")).resolve()
        if not sub.is_dir():
            return []
        return sorted(p.name for p in sub.iterdir() if (p / assignment).is_dir())

    def generate_assignment(self, assignment: str) -> None:
        """``nbgrader generate_assignment ASSIGNMENT --force``, run in this process through
        nbgrader's own API (one interpreter for many assignments instead of one each)."""
        from nbgrader.apps import NbGraderAPI

        os.environ["PATH"] = nbgrader_env()["PATH"]  # it shells out to alembic
        api = NbGraderAPI(coursedir=self.coursedir, config=self.config)
        result = api.generate_assignment(assignment, force=True)
        if not result.get("success"):
            tail = (result.get("log") or "") + (result.get("error") or "")
            raise RuntimeError(f"nbgrader generate_assignment {assignment} --force failed:\n{tail[-3000:]}")

    def nbgrader(self, *args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
        """Run ``nbgrader ARGS`` in the course directory."""
        cmd = [str(Path(sys.executable).parent / "nbgrader"), *args]
        if not Path(cmd[0]).exists():
            cmd = [sys.executable, "-m", "nbgrader", *args]
        log.info("running %s", " ".join(cmd))
        out = subprocess.run(
            cmd,
            cwd=self.root,
            env=nbgrader_env(),
            text=True,
            stdout=subprocess.PIPE if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
        )
        if check and out.returncode != 0:
            tail = (out.stdout or "")[-3000:] if quiet else ""
            raise RuntimeError(f"nbgrader {' '.join(args)} failed with status {out.returncode}\n{tail}")
        return out
