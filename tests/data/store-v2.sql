-- A store as runstone 0.1.0 wrote it (schema version 2). Frozen: never edit.
BEGIN TRANSACTION;
CREATE TABLE batches (
        batch_id TEXT PRIMARY KEY,
        run_pk INTEGER NOT NULL,
        applied_ms INTEGER NOT NULL
    );
INSERT INTO "batches" VALUES('66363e3cae9b41aabfce6baf3b265753',1,1795710091784);
CREATE TABLE metric_chunks (
        pk INTEGER PRIMARY KEY,
        run_pk INTEGER NOT NULL,
        key TEXT NOT NULL,
        n INTEGER NOT NULL,
        min_step INTEGER NOT NULL,
        max_step INTEGER NOT NULL,
        steps BLOB,
        vals BLOB NOT NULL,
        stamps BLOB NOT NULL
    );
INSERT INTO "metric_chunks" VALUES(1,1,'loss',3,0,2,NULL,X'000000000000F03F000000000000E03F000000000000D03F',X'881300000000000089130000000000008A13000000000000');
CREATE TABLE metric_summary (
        run_pk INTEGER NOT NULL,
        key TEXT NOT NULL,
        last_step INTEGER NOT NULL,
        last_value REAL,
        last_timestamp_ms INTEGER NOT NULL,
        min_value REAL,
        max_value REAL,
        count INTEGER NOT NULL,
        PRIMARY KEY (run_pk, key)
    );
INSERT INTO "metric_summary" VALUES(1,'loss',2,0.25,5002,0.25,1.0,3);
CREATE TABLE output_chunks (
        run_pk INTEGER NOT NULL,
        byte_offset INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (run_pk, byte_offset)
    );
CREATE TABLE params (
        run_pk INTEGER NOT NULL,
        key TEXT NOT NULL,
        value_json TEXT NOT NULL,
        value_num REAL,
        value_text TEXT NOT NULL,
        PRIMARY KEY (run_pk, key)
    );
INSERT INTO "params" VALUES(1,'lr','0.1',0.1,'0.1');
INSERT INTO "params" VALUES(1,'model.depth','3',3.0,'3');
CREATE TABLE run_records (
        run_pk INTEGER NOT NULL,
        part TEXT NOT NULL,
        record_json TEXT NOT NULL,
        PRIMARY KEY (run_pk, part)
    );
INSERT INTO "run_records" VALUES(1,'seeds','{"PYTHONHASHSEED":null,"deterministic":false,"seed":0,"seeded":["random"],"settings":{},"status":"ok"}');
CREATE TABLE runs (
        pk INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        start_time_ms INTEGER NOT NULL,
        end_time_ms INTEGER,
        heartbeat_ms INTEGER,
        exit_code INTEGER,
        error TEXT,
        command_json TEXT NOT NULL,
        cwd TEXT NOT NULL,
        host TEXT NOT NULL,
        username TEXT NOT NULL,
        pid INTEGER NOT NULL,
        runstone_version TEXT NOT NULL,
        config_json TEXT NOT NULL,
        config_digest TEXT NOT NULL,
        output_bytes INTEGER NOT NULL
    );
INSERT INTO "runs" VALUES(1,'01a2000000000000a000000000000002','proj','frozen-v2','finished',1000,9000,1000,NULL,NULL,'["python", "train.py", "--lr", "0.1"]','/work','host-a','alice',4242,'0.0.test','{"lr":0.1,"model":{"depth":3}}','sha256:eed87fee05716777c4bb70702259df68610d34629b7a17aee1ca339a66a4ffc9',0);
CREATE TABLE schema_info (id INTEGER PRIMARY KEY, version INTEGER NOT NULL);
INSERT INTO "schema_info" VALUES(1,2);
CREATE TABLE tags (
        run_pk INTEGER NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (run_pk, key)
    );
INSERT INTO "tags" VALUES(1,'stage','dev');
CREATE INDEX runs_project_id ON runs (project, id);
CREATE INDEX runs_status ON runs (status);
CREATE INDEX params_key_num ON params (key, value_num);
CREATE INDEX params_key_text ON params (key, value_text);
CREATE INDEX metric_summary_key ON metric_summary (key, last_value);
CREATE INDEX metric_chunks_run_key ON metric_chunks (run_pk, key, pk);
COMMIT;
