"""The ``gearmgr`` command and its subcommands."""
