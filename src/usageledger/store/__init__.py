"""The store: table metadata, engines, dialect differences and migrations."""
