-- $GOOSE_PATH_ROOT/data/sessions/sessions.db. The plain *_tokens columns are the LAST turn;
-- accumulated_* are the session's totals.
INSERT INTO sessions (id, name, working_dir, created_at, total_tokens, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, accumulated_total_tokens, accumulated_input_tokens, accumulated_output_tokens, accumulated_cache_read_tokens, accumulated_cache_write_tokens, provider_name, model_config_json) VALUES
 -- Anthropic: input includes both caches; the last turn is not the total.
 ('20250915_1', 'refactor', '/home/alice/proj-g', '2025-09-15 10:00:00', 52000, 51000, 1000, 48000, 2000, 186000, 180000, 6000, 150000, 12000, 'anthropic', '{"model_name":"claude-sonnet-4-20250514","context_limit":200000,"temperature":null,"max_tokens":null,"toolshim":false,"toolshim_model":null}'),
 -- Gemini: output excludes thinking; total - (input + output) is the reasoning.
 ('20250915_2', 'docs', '/home/alice/proj-g', '2025-09-15T22:15:00Z', 9000, 7000, 800, NULL, NULL, 26000, 20000, 3000, NULL, NULL, 'google', '{"model_name":"gemini-2.5-pro","context_limit":1000000}'),
 -- Written before Goose kept accumulated totals: the plain columns are all there is.
 ('20250916_1', 'old', '/home/alice/proj-h', '2025-09-16 09:30:00', 780, 700, 80, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'openai', '{"model_name":"gpt-4o"}'),
 -- A session that has not called the model yet.
 ('20250916_2', 'new', '/home/alice/proj-h', '2025-09-16 11:00:00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'openai', '{"model_name":"gpt-4o"}'),
 -- Hostile rows: an unreadable start, a negative count.
 ('20250916_3', 'bad date', '/tmp', 'yesterday-ish', 10, 5, 5, NULL, NULL, 10, 5, 5, NULL, NULL, 'openai', '{"model_name":"gpt-4o"}'),
 ('20250916_4', 'negative', '/tmp', '2025-09-16 12:00:00', 10, 5, 5, NULL, NULL, 10, -5, 5, NULL, NULL, 'openai', '{"model_name":"gpt-4o"}');
