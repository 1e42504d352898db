"""Operations jobs over the server ledger (docs/design.md §2, §6): plain functions over a Database.

::

    replay     rebuild usage_buckets from bucket_revisions and usage_daily from usage_buckets
    verify     recompute both aside (read-only) and report every difference
    backfill   plan → apply → rollback of bucket values, as new revisions
    retention  delete old ingest receipts and old superseded revisions, in bounded batches
    copy       copy a whole ledger to another database and prove the copy equal

Each job writes one evidence line per stage (:mod:`usageledger.ops.jobs`); the CLI
(``usageledger.cli.ops``) only parses options and prints.
"""
