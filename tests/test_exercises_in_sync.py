"""exercises/ is exactly what `nbgrader generate_assignment` makes of solutions/ (nothing hand-edited).

Every assignment in solutions/ is regenerated with nbgrader (its Python API, one process
for all of them, the repo's nbgrader_config.py) into a temporary release folder and
compared with the committed exercises/, file by file; notebooks are compared as JSON.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.nbgrader, pytest.mark.xdist_group("nbgrader_sync")]

REPO = Path(__file__).resolve().parents[1]


def assignments(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def files(folder: Path) -> dict[str, Path]:
    ignored = {".ipynb_checkpoints", "__pycache__"}
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*"))
            if p.is_file() and not ignored & set(p.relative_to(folder).parts)}


def load(path: Path):
    if path.suffix == ".ipynb":
        return json.loads(path.read_text())
    return path.read_bytes()


def regenerate(tmp_path: Path, ids: list[str]) -> Path:
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    root = tmp_path / "course"
    for assignment_id in ids:
        shutil.copytree(REPO / "solutions" / assignment_id, root / "solutions" / assignment_id)
    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.release_directory = "regenerated"
    config.GenerateAssignment.no_database = True  # the released notebooks do not depend on the gradebook
    config.SaveCells.enabled = False
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    for assignment_id in ids:
        result = api.generate_assignment(assignment_id, force=True, create=False)
        assert result["success"], f"{assignment_id}: {result.get('error')}\n{result.get('log')}"
    return root / "regenerated"


def test_every_solution_has_its_released_exercise(tmp_path):
    solution_ids = assignments(REPO / "solutions")
    assert solution_ids, "no assignment in solutions/"
    assert assignments(REPO / "exercises") == solution_ids, (
        "exercises/ and solutions/ hold different assignments; run "
        "`nbgrader generate_assignment <id> --force` from the repo root")
    regenerated = regenerate(tmp_path, solution_ids)
    for assignment_id in solution_ids:
        fresh, committed = files(regenerated / assignment_id), files(REPO / "exercises" / assignment_id)
        hint = f"run `nbgrader generate_assignment {assignment_id} --force` from the repo root"
        assert sorted(fresh) == sorted(committed), f"{assignment_id}: files differ; {hint}"
        for name in fresh:
            assert load(fresh[name]) == load(committed[name]), f"exercises/{assignment_id}/{name} is stale; {hint}"


def test_released_notebooks_carry_no_solutions_or_outputs():
    for nb_path in sorted((REPO / "exercises").rglob("*.ipynb")):
        text = nb_path.read_text()
        assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text, nb_path
        nb = json.loads(text)
        for cell in nb["cells"]:
            assert not cell.get("outputs") and cell.get("execution_count") is None, nb_path


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
