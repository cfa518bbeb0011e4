"""Count the words of a text, reporting progress line by line.

Shows ``job.status`` (WORK_STATUS) and a JSON result.
"""


def word_count(job):
    lines = job.text.splitlines() or [""]
    words = 0
    for i, line in enumerate(lines, 1):
        words += len(line.split())
        job.status(i, len(lines))
    job.log.debug("counted %d words", words)
    return {"lines": len(lines), "words": words}
