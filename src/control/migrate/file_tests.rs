//! The migration file's parser and checks, file by file: what parses, and each error naming
//! the file, the operation and what to write instead.

use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<MigrationFile, MigrateError> {
    MigrationFile::parse(Path::new("0002.toml"), text)
}

const ADD: &str = r#"
version = "v2"
from = "v1"

[[operations]]
op = "add_column"
table = "model_metadata"
up = "'neural_network'"
column = { name = "model_type", type = "text", nullable = false }
"#;

#[test]
fn an_add_column_file_parses_with_default_settings() {
    let file = parse(ADD).unwrap();
    assert_eq!(file.migration.version, "v2");
    assert_eq!(file.migration.settings, MigrationSettings::default());
    let Operation::AddColumn(op) = &file.migration.operations[0] else {
        panic!("not add_column");
    };
    assert!(!op.column.nullable);
    assert_eq!(op.up.as_deref(), Some("'neural_network'"));
    assert_eq!(file.checksum.len(), 64);
}

#[test]
fn unknown_keys_are_errors_naming_them() {
    let error = parse(&ADD.replace("up =", "upp ="))
        .unwrap_err()
        .to_string();
    assert!(error.contains("upp"), "{error}");
    let error = parse(&format!("{ADD}\n[settings]\nbatch = 5\n"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("batch"), "{error}");
}

#[test]
fn alter_column_to_not_null_without_up_is_refused() {
    let alter = r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "t"
column = "score"
nullable = false
"#;
    let error = parse(alter).unwrap_err().to_string();
    assert!(error.contains("operation 1 (alter_column)"), "{error}");
    assert!(
        error.contains("column score becomes NOT NULL") && error.contains("give `up`"),
        "{error}"
    );
    parse(&format!("{alter}up = \"COALESCE(score, 0)\"\n")).expect("with up it parses");
}

#[test]
fn a_not_null_column_without_up_or_default_is_refused() {
    let error = parse(&ADD.replace("up = \"'neural_network'\"\n", ""))
        .unwrap_err()
        .to_string();
    assert!(error.contains("operation 1 (add_column)"), "{error}");
    assert!(error.contains("give `up`"), "{error}");
}

#[test]
fn fragments_cannot_end_the_statement() {
    let hostile = ADD.replace("'neural_network'", "1); DROP TABLE model_metadata; --");
    let error = parse(&hostile).unwrap_err().to_string();
    assert!(error.contains("single expression"), "{error}");
    let quoted = ADD.replace(
        "'neural_network'",
        "'a;b' || \\\"x;y\\\" -- ; \\n || $q$;$q$",
    );
    assert!(parse(&quoted).is_ok());
    let breakout = ADD.replace("'neural_network'", "$viewgate_sync$ || 1");
    assert!(
        parse(&breakout)
            .unwrap_err()
            .to_string()
            .contains("reserves")
    );
}

#[test]
fn versions_and_settings_are_checked() {
    assert!(parse(&ADD.replace("\"v2\"", "\"V2\"")).is_err());
    assert!(parse(&ADD.replace("from = \"v1\"", "from = \"v2\"")).is_err());
    let error = parse(&format!("{ADD}\n[settings]\nbatch_size = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("batch_size"), "{error}");
    let file = parse(&format!(
        "{ADD}\n[settings]\nbatch_size = 50\nbatch_delay_ms = 5\n"
    ))
    .unwrap();
    assert_eq!(file.migration.settings.batch_size, 50);
    assert_eq!(
        file.migration.settings.batch_delay,
        Duration::from_millis(5)
    );
}

#[test]
fn every_operation_kind_parses() {
    let text = r#"
version = "v3"
from = "v2"
[[operations]]
op = "drop_column"
table = "t"
column = "legacy"
down = "'x'"
[[operations]]
op = "rename_column"
table = "t"
from = "a"
to = "b"
[[operations]]
op = "alter_column"
table = "t"
column = "n"
type = "bigint"
up = "n::bigint"
down = "n::integer"
[[operations]]
op = "create_table"
table = "tags"
columns = [{ name = "id", type = "bigserial", primary_key = true }, { name = "label", type = "text", nullable = false, unique = true }]
[[operations]]
op = "drop_table"
table = "old"
[[operations]]
op = "rename_table"
from = "t"
to = "things"
[[operations]]
op = "create_index"
name = "t_b_idx"
table = "t"
columns = ["b"]
[[operations]]
op = "drop_index"
name = "t_old_idx"
[[operations]]
op = "rename_constraint"
table = "t"
from = "t_n_check"
to = "t_n_positive"
[[operations]]
op = "set_replica_identity"
table = "t"
identity = "index"
index = "t_b_idx"
[[operations]]
op = "raw_sql"
up = "COMMENT ON TABLE t IS 'x'"
down = "COMMENT ON TABLE t IS NULL"
"#;
    let file = parse(text).unwrap();
    let kinds: Vec<_> = file
        .migration
        .operations
        .iter()
        .map(Operation::kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "drop_column",
            "rename_column",
            "alter_column",
            "create_table",
            "drop_table",
            "rename_table",
            "create_index",
            "drop_index",
            "rename_constraint",
            "set_replica_identity",
            "raw_sql"
        ]
    );
}

#[test]
fn a_new_table_needs_a_primary_key() {
    let text = r#"
version = "v2"
from = "v1"
[[operations]]
op = "create_table"
table = "tags"
columns = [{ name = "label", type = "text" }]
"#;
    assert!(parse(text).unwrap_err().to_string().contains("primary key"));
}

#[test]
fn a_replica_identity_names_an_index_exactly_when_it_is_one() {
    let identity = |rest: &str| {
        parse(&format!(
            "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"set_replica_identity\"\ntable = \"t\"\n{rest}\n"
        ))
        .map(|_| ())
        .map_err(|error| error.to_string())
    };
    assert!(identity("identity = \"full\"").is_ok());
    assert!(identity("identity = \"index\"\nindex = \"t_key\"").is_ok());
    let missing = identity("identity = \"index\"").unwrap_err();
    assert!(missing.contains("needs `index`"), "{missing}");
    let stray = identity("identity = \"full\"\nindex = \"t_key\"").unwrap_err();
    assert!(
        stray.contains("`index` goes with identity = \"index\" only"),
        "{stray}"
    );
    let unknown = identity("identity = \"everything\"").unwrap_err();
    assert!(
        unknown.contains("unknown variant `everything`"),
        "{unknown}"
    );
}
