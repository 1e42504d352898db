"""The tracker: the local ledger on one machine (scan, report, status) and upload (login, push).

::

    assistant logs ─► scan (files → sources/ parsers → events) ─► local ledger (SQLite)
                                                                  ├─ report, status
                                                                  └─ push ─► server

``ledger`` opens the embedded SQLite file (``db``: the standard ``sqlite3``, no ORM) and holds
its one user and one device; ``events`` is its write path (events → half-hour buckets →
``daily.rebuild_days``, the server's rollup statement); ``settings`` reads the two settings
the commands use; ``files`` reads log files in bounded chunks; ``scan`` drives both;
``report``, ``status``, ``login`` and ``push`` are the rest. See docs/tracker.md.
"""
