"""Reverse the text it is given: ``gearman -f reverse hello`` prints ``olleh``."""


def reverse(job):
    return job.text[::-1]
