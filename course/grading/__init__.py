"""The instructor pipeline: sandboxed, parallel, authoritative grading into nbgrader's gradebook.

Modules: ``coursedir`` (config, folders, nbgrader's CLI), ``notebook`` (source spec, sanitising a
submission, the execution plan), ``sandbox`` (fork server + one-shot children), ``judge`` (cases and
verdicts, parent side), ``execute`` (one submission, surviving crashes and timeouts), ``runner``
(jobs, worker processes, Dask), ``gradebook`` (the single writer), ``report`` (tables, CSV),
``pipeline`` (what the ``course`` command calls).
"""
