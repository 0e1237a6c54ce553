"""Every faulty submission ends in a recorded state and never costs another item or student."""

from __future__ import annotations

import nbformat
import pytest
from nbgrader.api import Gradebook

import fake_course as fc
from course.grading.gradebook import load_log

pytestmark = [pytest.mark.nbgrader]


def _log(batch, student):
    course, _ = batch
    res = load_log(course, student, fc.ASSIGNMENT)
    assert res is not None, f"no grading log for {student}"
    return res


def _items(batch, student):
    return {i["grade_id"]: i for i in _log(batch, student).items}


def _passed(batch, student):
    return {g for g, i in _items(batch, student).items() if i["passed"]}


def _autograded(batch, student):
    course, _ = batch
    return nbformat.read(str(course.path("autograded", student, fc.ASSIGNMENT) / f"{fc.ASSIGNMENT}.ipynb"), as_version=4)


def _outputs_text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        parts.append(o.get("text", "") if o.output_type == "stream" else f"{o.get('ename')}: {o.get('evalue')}")
    return "\n".join(parts)


def _cell_with(nb, text: str):
    return next(c for c in nb.cells if c.cell_type == "code" and text in c.source)


ALL = {"test_double", "test_Scaler", "test_triple"}


def test_every_submission_has_a_state_and_a_gradebook_entry(batch):
    course, rows = batch
    import faults

    assert set(rows) == set(faults.SUBMISSIONS)
    with Gradebook(course.db_url, course.course_id) as gb:
        for student in faults.SUBMISSIONS:
            assert rows[student].state in ("graded", "ungradable"), (student, rows[student])
            sub = gb.find_submission(fc.ASSIGNMENT, student)
            assert sub.max_score == 5.0
            assert (course.path("autograded", student, fc.ASSIGNMENT) / f"{fc.ASSIGNMENT}.ipynb").exists()


def test_good_and_wrong(batch):
    _, rows = batch
    assert _passed(batch, "good") == ALL
    assert rows["good"].score == 4.0 and rows["good"].needs_manual  # the written answer waits for a human
    items = _items(batch, "wrong")
    assert not items["test_double"]["passed"]
    assert "your result is 3 * x" in items["test_double"]["message"]
    assert items["test_Scaler"]["passed"] and not items["test_triple"]["passed"]
    assert rows["wrong"].score == 1.0


def test_untouched_notebook_scores_zero(batch):
    _, rows = batch
    items = _items(batch, "stub")
    assert not any(i["passed"] for i in items.values())
    assert "NotImplementedError" in items["test_double"]["message"]
    assert rows["stub"].score == 0.0


@pytest.mark.parametrize("student, why", [("invalid_json", "not a valid notebook"), ("not_utf8", "not UTF-8")])
def test_unreadable_notebook_is_ungradable_with_reason(batch, student, why):
    _, rows = batch
    assert rows[student].state == "ungradable"
    assert why in rows[student].detail
    assert rows[student].score == 0.0
    nb = _autograded(batch, student)  # a placeholder that says why, so feedback can too
    assert why in nb.cells[0].source


def test_deleted_cells(batch):
    items = _items(batch, "deleted_cells")
    warnings = " ".join(_log(batch, "deleted_cells").warnings)
    assert "'test_double' was missing" in warnings
    assert items["test_double"]["passed"]  # the test cell came back; double itself was there
    assert not items["test_Scaler"]["passed"] and "Scaler is not defined" in items["test_Scaler"]["message"]
    assert items["test_triple"]["passed"]


def test_duplicated_cells_last_copy_counts(batch):
    assert _passed(batch, "duplicated") == ALL
    assert any("more than once" in w for w in _log(batch, "duplicated").warnings)


def test_changed_cell_types_are_restored(batch):
    assert _passed(batch, "changed_types") == ALL
    warnings = " ".join(_log(batch, "changed_types").warnings)
    assert "'double' was changed from code to markdown" in warnings
    nb = _autograded(batch, "changed_types")
    assert nb.cells[fc.cell_index(nb, "double")].cell_type == "code"


def test_stripped_metadata_is_matched_again(batch):
    _, rows = batch
    assert _passed(batch, "stripped") == ALL
    warnings = " ".join(_log(batch, "stripped").warnings)
    assert "'double' had lost its nbgrader metadata; matched by the definition of double" in warnings
    assert "'test_double' had lost its nbgrader metadata; matched by its text" in warnings
    assert "'explain' had lost its nbgrader metadata; matched by its position" in warnings
    assert rows["stripped"].score == 4.0


def test_renamed_notebook_is_graded(batch):
    assert _passed(batch, "renamed") == ALL
    log = _log(batch, "renamed")
    assert log.filename == "my attempt (1).ipynb"
    assert any("renamed" in w for w in log.warnings)


def test_kernel_death_at_import_costs_only_that_cell(batch):
    assert _passed(batch, "exit_at_import") == ALL
    log = _log(batch, "exit_at_import")
    assert log.children >= 2
    cell = _cell_with(_autograded(batch, "exit_at_import"), "os._exit(3)")
    assert "DeadKernelError" in _outputs_text(cell) and "exited with status 3" in _outputs_text(cell)


def test_kernel_death_inside_function(batch):
    items = _items(batch, "exit_in_function")
    assert not items["test_double"]["passed"]
    assert "exited with status 1" in items["test_double"]["message"]
    assert items["test_Scaler"]["passed"] and items["test_triple"]["passed"]


def test_sys_exit_is_an_error_not_a_death(batch):
    items = _items(batch, "sys_exit")
    assert items["test_double"]["passed"] and items["test_triple"]["passed"]
    assert "raised SystemExit" in items["test_Scaler"]["message"]
    cell = _cell_with(_autograded(batch, "sys_exit"), "sys.exit(2)")
    assert "SystemExit" in _outputs_text(cell)


def test_segfault(batch):
    items = _items(batch, "segfault")
    assert "segmentation fault" in items["test_double"]["message"]
    assert items["test_Scaler"]["passed"] and items["test_triple"]["passed"]


def test_infinite_loop_at_import(batch):
    assert _passed(batch, "loop_at_import") == ALL
    cell = _cell_with(_autograded(batch, "loop_at_import"), "while True")
    assert "CellTimeoutError" in _outputs_text(cell)


def test_infinite_loop_in_function(batch):
    items = _items(batch, "loop_in_function")
    assert "double took longer than 3 s" in items["test_double"]["message"]
    assert items["test_Scaler"]["passed"] and items["test_triple"]["passed"]


def test_output_flood_is_capped(batch):
    assert _passed(batch, "flood") == ALL
    cell = _cell_with(_autograded(batch, "flood"), "spam")
    text = _outputs_text(cell)
    assert len(text) < 200_000
    assert "truncated" in text or "output limit" in text


def test_memory_bomb(batch):
    items = _items(batch, "memory_bomb")
    assert not items["test_double"]["passed"]
    assert "memory" in items["test_double"]["message"]
    assert items["test_Scaler"]["passed"] and items["test_triple"]["passed"]
    cell = _cell_with(_autograded(batch, "memory_bomb"), "hog")
    assert "MemoryError" in _outputs_text(cell)


def test_forbidden_builtin(batch):
    message = _items(batch, "forbidden")["test_double"]["message"]
    assert "must not call torch.mul" in message
