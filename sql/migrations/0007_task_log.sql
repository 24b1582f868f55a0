-- sitrep 0007: where each task's time went, per stage, so that the next bottleneck is visible
-- (`make bench` reads it; so can an operator: SELECT stage, sum(seconds) FROM task_stage_log ...).
CREATE TABLE task_stage_log (
    id          bigserial   PRIMARY KEY,
    run_id      text,
    task        text        NOT NULL,
    stage       text        NOT NULL,
    source_ids  bigint[]    NOT NULL DEFAULT '{}',
    seconds     real        NOT NULL,
    items       integer     NOT NULL DEFAULT 0,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_stage_log_run_idx ON task_stage_log (run_id);
