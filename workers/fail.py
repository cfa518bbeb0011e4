"""Always fails: shows what a client sees when worker code raises.

The job fails (WORK_WARNING "ValueError: ..." then WORK_FAIL) and the process lives on.
"""


def fail(job):
    raise ValueError(f"cannot handle {job.text!r}")
