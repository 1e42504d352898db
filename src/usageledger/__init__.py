"""usageledger: an exact, de-duplicated, replayable ledger of AI coding-assistant token usage."""

__version__ = "0.1.0"
