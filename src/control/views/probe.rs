//! What an expression reads, as Postgres resolves it: a temporary view of the expression,
//! whose rule records every column it reads and whether it reads a whole row.
//!
//! A spec's read expression and a migration's `up` / `down` may read only what their version
//! shows; a name check on the text is not enough. `to_jsonb(t)` reads a whole row (the
//! fifty-second red-team pass); `ROW(t.*)` is expanded when the view is made into every
//! column the table has then, hidden ones included, and names none of them; a subquery over
//! the base table (`(SELECT s.secret FROM public.t s …)`) reads a hidden column by a name the
//! version's columns do not resolve (the fifty-third pass, both). The rule tells all three.
//! Creating the probe needs a transaction that may create a temporary view.

use std::collections::BTreeSet;
use std::fmt;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

/// Whether view `$1` reads a whole row anywhere (`to_jsonb(t)`, `t.*`, a row passed to a
/// function): Postgres stores such a reference in the view's rule as a variable of attribute
/// number 0, and no string constant prints so in the rule's text.
const WHOLE_ROW_SQL: &str = "
SELECT pg_catalog.strpos(r.ev_action::pg_catalog.text, ':varattno 0 ') > 0
  FROM pg_catalog.pg_rewrite r
 WHERE r.ev_class = $1::pg_catalog.text::pg_catalog.regclass";

/// The columns of relation `$2` that view `$1` reads, by name.
const COLUMNS_READ_SQL: &str = "
SELECT DISTINCT a.attname::pg_catalog.text
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
  JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
 WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
   AND r.ev_class = $1::pg_catalog.text::pg_catalog.regclass
   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
   AND d.refobjid = $2::pg_catalog.text::pg_catalog.regclass
   AND d.refobjsubid > 0
 ORDER BY 1";

/// What a probed expression reads that it should not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beyond {
    /// A whole row of some relation.
    WholeRow,
    /// These columns of the table.
    Columns(Vec<String>),
}

impl fmt::Display for Beyond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Beyond::WholeRow => write!(f, "a whole row"),
            Beyond::Columns(columns) => write!(f, "column(s) {}", columns.join(", ")),
        }
    }
}

/// Makes `view` a temporary view of `SELECT (<expression>) AS probe FROM <from>` (`from`
/// quoted by the caller); [`drop_probe`] drops it once looked at.
pub async fn create_probe(
    client: &impl GenericClient,
    view: &str,
    expression: &str,
    from: &str,
) -> Result<(), tokio_postgres::Error> {
    // The expression is SQL by definition (the spec's or the migration file's), pasted as in
    // the view or trigger it defines.
    client
        .batch_execute(&format!(
            "CREATE TEMPORARY VIEW {view} AS SELECT ({expression}) AS probe FROM {from}"
        ))
        .await
}

/// Drops the probe [`create_probe`] made.
pub async fn drop_probe(
    client: &impl GenericClient,
    view: &str,
) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(&format!("DROP VIEW {view}")).await
}

/// Whether the temporary view `view` reads a whole row (see [`WHOLE_ROW_SQL`]).
pub async fn reads_whole_row(
    client: &impl GenericClient,
    view: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_typed_opt(WHOLE_ROW_SQL, &[(&view, Type::TEXT)])
        .await?
        .is_some_and(|row| row.get(0)))
}

/// The columns of `table` (quoted, qualified) the temporary view `view` reads.
pub async fn columns_read(
    client: &impl GenericClient,
    view: &str,
    table: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(client
        .query_typed(
            COLUMNS_READ_SQL,
            &[(&view, Type::TEXT), (&table, Type::TEXT)],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// What the temporary view `view` of `expression` reads beyond what the expression spells: a
/// whole row, or a column of `table` whose name is not one of its identifiers (a star
/// expanded: `ROW(t.*)`).
pub async fn reads_unspelled(
    client: &impl GenericClient,
    view: &str,
    expression: &str,
    table: &str,
) -> Result<Option<Beyond>, tokio_postgres::Error> {
    if reads_whole_row(client, view).await? {
        return Ok(Some(Beyond::WholeRow));
    }
    let spelled = spelled_names(expression);
    let unspelled: Vec<String> = columns_read(client, view, table)
        .await?
        .into_iter()
        .filter(|column| !spelled.contains(column))
        .collect();
    Ok((!unspelled.is_empty()).then_some(Beyond::Columns(unspelled)))
}

/// The identifiers `expression` spells, as Postgres folds them (unquoted to lower case).
/// One spelled with Unicode escapes (`U&"…"`) is not decoded, so the column it names counts
/// as unspelled.
fn spelled_names(expression: &str) -> BTreeSet<String> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, expression).tokenize() else {
        return BTreeSet::new();
    };
    tokens
        .into_iter()
        .filter_map(|token| match token {
            Token::Word(word) => match word.quote_style {
                None => Some(word.value.to_lowercase()),
                Some('"') => Some(word.value),
                Some(_) => None,
            },
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelled_names_fold_unquoted_words_and_skip_strings() {
        let names = spelled_names(r#"upper(Name) || "Kind" || 'model_type' || t.size"#);
        assert!(names.contains("name") && names.contains("Kind") && names.contains("size"));
        assert!(!names.contains("model_type") && !names.contains("kind"));
    }
}
