"""Failed jobs and poison jobs: the SQLite record (store.py), the supervisor's death counts
(deaths.py) and the quarantine list it shares with its workers (quarantine.py)."""
