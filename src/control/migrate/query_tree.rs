//! libpg_query's trees (of a statement, or of a compiled PL/pgSQL function) as serde writes
//! them, walked: what `sql_names.rs`, `plpgsql_body.rs` and `constant_sql.rs` read them with.
//! Pure.

use serde_json::Value;

/// Calls `visit` on each object of `node`, depth first (a node is `{"Kind": {…}}`).
pub(super) fn each_object(node: &Value, visit: &mut impl FnMut(&serde_json::Map<String, Value>)) {
    match node {
        Value::Object(fields) => {
            visit(fields);
            for value in fields.values() {
                each_object(value, visit);
            }
        }
        Value::Array(values) => {
            for value in values {
                each_object(value, visit);
            }
        }
        _ => {}
    }
}
