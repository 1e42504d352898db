"""The tracker: the local ledger on one machine (scan, report, status) and upload (login, push).

::

    assistant logs ─► scan (files → sources/ parsers → events) ─► local ledger (SQLite)
                                                                  ├─ report, status
                                                                  └─ push ─► server

``ledger`` opens the embedded SQLite file and holds its one user and one device; ``events``
is its write path (events → half-hour buckets → ``ledger.rollups.rebuild_days``); ``files``
reads log files in bounded chunks; ``scan`` drives both; ``report``, ``status``, ``login``
and ``push`` are the rest. See docs/tracker.md.
"""
