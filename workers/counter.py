"""A class worker: one instance per process, so its state lives across jobs.

Returns how many jobs this process has counted so far, and the text it was given.
"""


class counter:
    def __init__(self):
        self.seen = 0

    def run(self, job):
        self.seen += 1
        return {"count": self.seen, "pid_local_total": self.seen, "text": job.text}
