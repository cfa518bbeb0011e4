"""The supervisor: the main loop, process slots, the plan, worker files, the embedded gearmand,
the job-server check and code-change watching. Never imports worker code."""
