"""Tests for the pure log parsers in usageledger.sources."""
