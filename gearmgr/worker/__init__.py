"""A worker process: the job loop, the Job object, and the set-up of a forked process.

Imports the wire and the shared modules (scoreboard, logs); never the supervisor."""
