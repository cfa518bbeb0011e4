"""The wire: the Gearman protocol (a sans-IO codec), and the client and admin sides over it.

Imports nothing of gearmgr but ``units`` and ``errors``."""
