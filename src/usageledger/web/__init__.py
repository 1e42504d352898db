"""The web dashboard: sign-in pages and static assets; the data comes from the read API."""
