"""The operator's surfaces of a running supervisor: control socket, status, metrics, systemd,
pid file, privileges."""
