"""``python -m usageledger`` runs the CLI."""

from usageledger.cli import main

main()
