-- Kilo CLI's message table as its migrations create it (packages/opencode/src/session/session.sql.ts
-- in Kilo-Org/kilocode): the JSON in "data" omits "id" and "sessionID", which are the columns.
CREATE TABLE `message` (
	`id` text PRIMARY KEY,
	`session_id` text NOT NULL,
	`time_created` integer NOT NULL,
	`time_updated` integer NOT NULL,
	`data` text NOT NULL
);
CREATE INDEX `message_session_time_created_id_idx` ON `message` (`session_id`,`time_created`,`id`);
INSERT INTO message VALUES ('msg_k00000000001UserMessage01', 'ses_k1a2b3c4d5e6KiloSession01', 1767311990000, 1767311990000,
 '{"role":"user","time":{"created":1767311990000},"agent":"code","model":{"providerID":"anthropic","modelID":"claude-sonnet-4-20250514"}}');
INSERT INTO message VALUES ('msg_k00000000002Assistant0002', 'ses_k1a2b3c4d5e6KiloSession01', 1767312000000, 1767312004000,
 '{"role":"assistant","time":{"created":1767312000000,"completed":1767312004000},"parentID":"msg_k00000000001UserMessage01","modelID":"claude-sonnet-4-20250514","providerID":"anthropic","mode":"code","agent":"code","path":{"cwd":"/home/alice/proj-k","root":"/home/alice/proj-k"},"cost":0.02,"tokens":{"input":100,"output":50,"reasoning":5,"cache":{"read":10,"write":20}},"finish":"stop"}');
INSERT INTO message VALUES ('msg_k00000000003Assistant0003', 'ses_k1a2b3c4d5e6KiloSession01', 1767315600000, 1767315609000,
 '{"role":"assistant","time":{"created":1767315600000,"completed":1767315609000},"parentID":"msg_k00000000001UserMessage01","modelID":"gpt-5","providerID":"openai","mode":"code","agent":"code","path":{"cwd":"/home/alice/proj-k","root":"/home/alice/proj-k"},"cost":0,"tokens":{"total":3500,"input":2000,"output":300,"reasoning":200,"cache":{"read":1000,"write":0}},"finish":"tool-calls"}');
INSERT INTO message VALUES ('msg_k00000000004Broken000004', 'ses_k1a2b3c4d5e6KiloSession01', 1767315700000, 1767315700000,
 '{"role":"assistant","time":{"created":1767315700000},"tokens":{"input":');
INSERT INTO message VALUES ('msg_k00000000005Assistant0005', 'ses_k1a2b3c4d5e6KiloSession01', 1767398400000, 1767398401000,
 '{"role":"assistant","time":{"created":1767398400000,"completed":1767398401000},"parentID":"msg_k00000000001UserMessage01","modelID":"claude-sonnet-4-20250514","providerID":"anthropic","mode":"code","agent":"code","path":{"cwd":"/home/alice/proj-k","root":"/home/alice/proj-k"},"cost":0,"tokens":{"input":7,"output":3,"reasoning":0,"cache":{"read":0,"write":0}},"finish":"stop"}');
INSERT INTO message VALUES ('msg_k00000000006Streaming0006', 'ses_k1a2b3c4d5e6KiloSession01', 1767398500000, 1767398500000,
 '{"role":"assistant","time":{"created":1767398500000},"modelID":"claude-sonnet-4-20250514","providerID":"anthropic","mode":"code","agent":"code","path":{"cwd":"/home/alice/proj-k","root":"/home/alice/proj-k"},"cost":0,"tokens":{"input":0,"output":0,"reasoning":0,"cache":{"read":0,"write":0}}}');
