-- ~/.hermes/profiles/work/state.db
INSERT INTO sessions (id, source, model, started_at, message_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, billing_provider, api_call_count) VALUES
 -- 2025-09-16T12:00:00Z, Anthropic direct: thinking counted inside output_tokens.
 ('20250916_120000_w00001', 'cli', 'claude-opus-4-1', 1758024000, 20, 300, 2000, 10000, 1000, 500, 'anthropic', 10),
 -- A copy of the default profile's first session (a copied profile): counts once.
 ('20250915_090000_a1b2c3', 'cli', 'anthropic/claude-sonnet-4', 1757926800.123, 14, 1200, 900, 40000, 2500, 0, 'openrouter', 7);
