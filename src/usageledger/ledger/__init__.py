"""The ledger: accounts, the write path, the single rebuild path and the read side."""
