-- ~/.hermes/state.db: started_at is Unix seconds (time.time()).
INSERT INTO sessions (id, source, model, started_at, ended_at, message_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, billing_provider, estimated_cost_usd, api_call_count) VALUES
 -- 2025-09-15T09:00:00.123Z, Anthropic via OpenRouter: caches apart from input.
 ('20250915_090000_a1b2c3', 'cli', 'anthropic/claude-sonnet-4', 1757926800.123, 1757928000.0, 14, 1200, 900, 40000, 2500, 0, 'openrouter', 0.0379, 7),
 -- 2025-09-15T23:30:00Z, Codex responses: reasoning inside output.
 ('20250915_233000_d4e5f6', 'telegram', 'gpt-5', 1757979000.0, NULL, 8, 5000, 3000, 20000, 0, 1800, 'openai-codex', NULL, 4),
 -- A session that has not called the model yet.
 ('20250916_070000_empty0', 'cli', 'gpt-5', 1758006000.0, NULL, 1, 0, 0, 0, 0, 0, NULL, NULL, 0),
 -- 2025-09-16T08:00:00.5Z, no model recorded (ccusage and tokscale skip such rows).
 ('20250916_080000_aaaaaa', 'cron', NULL, 1758009600.5, NULL, 2, 100, 50, 0, 0, 0, NULL, NULL, 1),
 -- Inconsistent: more reasoning than the output that contains it (a problem).
 ('20250916_090000_bad001', 'cli', 'gpt-5', 1758013200.0, NULL, 2, 10, 10, 0, 0, 20, 'openai', NULL, 1);
