"""nbgrader configuration for the course (this folder is the course directory)."""

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.course_id = "transformer-detectives"

# Student notebooks keep the answer cells' signatures and docstrings; the body becomes this.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Released notebooks carry no outputs and no execution counts.
c.ClearOutput.enabled = True

# A learner's notebook may not run forever during autograding.
c.ExecutePreprocessor.timeout = 120
c.Execute.timeout = 120

# Feedback must never show hidden tests. nbgrader 0.9.6's generate_feedback keeps the hidden
# tests that autograde restored into the test cells, so strip them here too (`course feedback`
# does the same).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
