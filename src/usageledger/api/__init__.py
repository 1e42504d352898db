"""The HTTP API's routers, thin over the ledger; ``usageledger.server.create_app`` mounts them."""
