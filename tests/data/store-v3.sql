-- A store as runstone 0.1.0 wrote it (schema version 3). Frozen: never edit.
BEGIN TRANSACTION;
CREATE TABLE artifacts (
        pk INTEGER PRIMARY KEY,
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        kind TEXT NOT NULL,
        digest TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        file_count INTEGER NOT NULL,
        is_dir INTEGER NOT NULL,
        stored INTEGER NOT NULL,
        metadata_json TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        run_pk INTEGER,
        UNIQUE (project, name, version),
        UNIQUE (project, name, digest)
    );
INSERT INTO "artifacts" VALUES(1,'frozen','model.bin',1,'model','sha256:f1f6f6df89bd724d3c43af3852a0ebab260e848d05a33ca5f23afdf066a5ebd5',14,1,0,1,'{}',1795715473890,1);
CREATE TABLE batches (
        batch_id TEXT PRIMARY KEY,
        run_pk INTEGER NOT NULL,
        applied_ms INTEGER NOT NULL
    );
INSERT INTO "batches" VALUES('b13b7cd596e54ea2bf295dfb72c16e45',1,1795715473862);
INSERT INTO "batches" VALUES('ac377132b1104b3e9e0739c46a48fdd0',1,1795715473863);
INSERT INTO "batches" VALUES('aab14881348f43dca32643c528259265',1,1795715473890);
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
INSERT INTO "metric_chunks" VALUES(1,1,'loss',3,0,2,NULL,X'000000000000F03F000000000000E03F000000000000D03F',X'C7A1FB18A2010000C7A1FB18A2010000C7A1FB18A2010000');
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
INSERT INTO "metric_summary" VALUES(1,'loss',2,0.25,1795715473863,0.25,1.0,3);
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
CREATE TABLE run_artifacts (
        run_pk INTEGER NOT NULL,
        artifact_pk INTEGER NOT NULL,
        direction TEXT NOT NULL,
        path TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        PRIMARY KEY (run_pk, artifact_pk, direction)
    );
INSERT INTO "run_artifacts" VALUES(1,1,'output','model.bin',1795715473890);
CREATE TABLE run_records (
        run_pk INTEGER NOT NULL,
        part TEXT NOT NULL,
        record_json TEXT NOT NULL,
        PRIMARY KEY (run_pk, part)
    );
INSERT INTO "run_records" VALUES(1,'config','{"digest":"sha256:eed87fee05716777c4bb70702259df68610d34629b7a17aee1ca339a66a4ffc9","source":"dict","status":"ok"}');
INSERT INTO "run_records" VALUES(1,'seeds','{"PYTHONHASHSEED":null,"deterministic":false,"seed":0,"seeded":["random"],"settings":{}}');
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
INSERT INTO "runs" VALUES(1,'01a218fba1c6702ab2fa2097f9be18ec','frozen','frozen-v3','finished',1795715473862,1795715473891,1795715473890,NULL,NULL,'["/work/main/.venv/bin/python", "-"]','/tmp/frz','vm','root',8958,'0.1.0','{"lr":0.1,"model":{"depth":3}}','sha256:eed87fee05716777c4bb70702259df68610d34629b7a17aee1ca339a66a4ffc9',0);
CREATE TABLE schema_info (id INTEGER PRIMARY KEY, version INTEGER NOT NULL);
INSERT INTO "schema_info" VALUES(1,3);
CREATE TABLE tags (
        run_pk INTEGER NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (run_pk, key)
    );
CREATE INDEX runs_project_id ON runs (project, id);
CREATE INDEX runs_status ON runs (status);
CREATE INDEX params_key_num ON params (key, value_num);
CREATE INDEX params_key_text ON params (key, value_text);
CREATE INDEX metric_summary_key ON metric_summary (key, last_value);
CREATE INDEX metric_chunks_run_key ON metric_chunks (run_pk, key, pk);
CREATE INDEX artifacts_digest ON artifacts (digest);
CREATE INDEX run_artifacts_artifact ON run_artifacts (artifact_pk);
COMMIT;
