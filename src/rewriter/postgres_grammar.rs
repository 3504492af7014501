//! PostgreSQL's own reading of a query string: where it names managed tables.
//!
//! sqlparser does the rewriting (it is fast, and its spans locate every edit), but its grammar
//! is not Postgres's: it fails on forms Postgres accepts (`ROWS FROM (…)`, some operators) and
//! could in principle read a statement differently. So on every cache miss the rewriter also
//! asks the server's own parser (the `pg_query` crate wraps libpg_query, the PostgreSQL parser
//! compiled as a library) which relation references the statement makes, and a statement is
//! only sent when the two agree (`rewrite.rs`). Where sqlparser cannot parse the statement at
//! all, these references are what is rewritten.
//!
//! The parse tree is walked generically (through its serde form), so no node type that can
//! hold a relation is forgotten: every `RangeVar` in a statement that reads or writes rows is
//! a reference, except the ones Postgres does not read as a relation here: the new table of
//! `SELECT … INTO` / `CREATE TABLE … AS` (an `IntoClause`), the names of a locking clause
//! (`FOR UPDATE OF t` names a FROM item, which keeps its name as the alias), and an
//! unqualified name a WITH item shadows in its scope. DML targets are never shadowed by a WITH
//! item: Postgres opens them as tables.

use pg_query::protobuf::node::Node as PgNode;
use serde_json::{Map, Value};

use super::targets::VersionTargets;

/// Where a reference stands, which decides how it may be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A FROM item (also `TABLE name`, `MERGE … USING`, `DELETE … USING`).
    From,
    /// The target of INSERT, UPDATE, DELETE or MERGE.
    Target,
    /// `COPY name … FROM`.
    CopyFrom,
    /// `COPY name … TO`: only readable through a query.
    CopyTo,
}

/// One reference to a managed table, as Postgres's parser reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Byte offset of the (possibly qualified) name in the query string.
    pub offset: usize,
    pub schema: Option<String>,
    pub name: String,
    /// Whether the reference carries its own alias.
    pub aliased: bool,
    pub place: Place,
}

/// What Postgres's parser says about a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// It parses; these are its references to managed tables, in tree order.
    Parsed(Vec<Reference>),
    /// Postgres rejects its syntax: sent as it is, it fails there and reads nothing.
    Rejected(String),
    /// The check could not be made (a tree deeper than the decoder allows, a NUL byte).
    Unavailable(String),
    /// Longer than [`MAX_CHECKED_BYTES`]: not checked (sqlparser's reading stands alone).
    TooLong,
}

/// The longest query string Postgres's parser is asked about. The parser itself is not
/// recursive, but the conversion of its tree to protobuf (in C) and the walk here are: a
/// left-deep chain like `1+1+…+1` nests one level per two bytes, and a level takes up to about
/// 4 KiB of stack in an unoptimised build. 16 KiB of text therefore needs at most about
/// 32 MiB, and [`CHECK_STACK_BYTES`] gives it twice that. Longer statements (bulk INSERTs,
/// mostly) are rewritten on sqlparser's reading alone.
pub const MAX_CHECKED_BYTES: usize = 16 * 1024;

/// The stack the check runs on: a fresh mapping per check (only the pages touched are ever
/// committed), so a deep tree can never overflow a worker thread's own, smaller stack.
pub const CHECK_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Statement kinds whose relation references read or write rows (the same kinds the
/// rewriter rewrites; DDL such as `CREATE VIEW … AS` keeps naming the base table).
fn rewritable(node: &PgNode) -> bool {
    matches!(
        node,
        PgNode::SelectStmt(_)
            | PgNode::InsertStmt(_)
            | PgNode::UpdateStmt(_)
            | PgNode::DeleteStmt(_)
            | PgNode::MergeStmt(_)
            | PgNode::CopyStmt(_)
            | PgNode::ExplainStmt(_)
            | PgNode::PrepareStmt(_)
            | PgNode::DeclareCursorStmt(_)
    )
}

/// The references `sql` makes to `targets`' managed tables, by Postgres's grammar.
pub fn managed_references(sql: &str, targets: &VersionTargets) -> Reading {
    if sql.len() > MAX_CHECKED_BYTES {
        return Reading::TooLong;
    }
    stacker::grow(CHECK_STACK_BYTES, || read(sql, targets))
}

fn read(sql: &str, targets: &VersionTargets) -> Reading {
    let parsed = match pg_query::parse(sql) {
        Ok(parsed) => parsed,
        Err(pg_query::Error::Parse(message)) => return Reading::Rejected(message),
        Err(other) => return Reading::Unavailable(other.to_string()),
    };
    let mut walker = Walker {
        targets,
        scopes: Vec::new(),
        found: Vec::new(),
        unlocatable: false,
    };
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        if !rewritable(node) {
            continue;
        }
        match serde_json::to_value(node) {
            Ok(tree) => walker.walk(&tree, Mode::Read),
            Err(error) => return Reading::Unavailable(error.to_string()),
        }
    }
    if walker.unlocatable {
        return Reading::Unavailable("a table reference without a position".into());
    }
    Reading::Parsed(walker.found)
}

/// How a `RangeVar` met in the walk is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    /// The `relation` of a DML statement, or of COPY.
    Target(Place),
}

struct Walker<'t> {
    targets: &'t VersionTargets,
    /// The WITH item names visible where the walk is, innermost last.
    scopes: Vec<Vec<String>>,
    found: Vec<Reference>,
    unlocatable: bool,
}

impl Walker<'_> {
    fn walk(&mut self, value: &Value, mode: Mode) {
        match value {
            Value::Array(items) => {
                for item in items {
                    self.walk(item, Mode::Read);
                }
            }
            Value::Object(map) => self.object(map, mode),
            _ => {}
        }
    }

    fn object(&mut self, map: &Map<String, Value>, mode: Mode) {
        if is_range_var(map) {
            self.range_var(map, mode);
            return;
        }
        // `SELECT … INTO new_table` and `CREATE TABLE … AS`: the new table is no reference.
        if map.contains_key("rel") && map.contains_key("skip_data") {
            return;
        }
        // `FOR UPDATE OF t`: `t` names a FROM item, not a relation.
        if map.contains_key("locked_rels") && map.contains_key("strength") {
            return;
        }
        if let Some(Value::Object(with)) = map.get("with_clause") {
            self.with_scope(map, with);
            return;
        }
        for (key, child) in map {
            let child_mode = match key.as_str() {
                "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                    self.statement(child, Place::Target);
                    continue;
                }
                "CopyStmt" => {
                    let from = child
                        .get("is_from")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    self.statement(child, if from { Place::CopyFrom } else { Place::CopyTo });
                    continue;
                }
                _ => Mode::Read,
            };
            self.walk(child, child_mode);
        }
    }

    /// A DML or COPY statement: its `relation` is a target; the rest is read as usual.
    fn statement(&mut self, body: &Value, place: Place) {
        let Value::Object(map) = body else {
            return;
        };
        if let Some(Value::Object(with)) = map.get("with_clause") {
            self.enter_with(with, |walker| walker.statement_fields(map, place));
        } else {
            self.statement_fields(map, place);
        }
    }

    fn statement_fields(&mut self, map: &Map<String, Value>, place: Place) {
        for (key, child) in map {
            match key.as_str() {
                "with_clause" => {}
                "relation" => self.walk(child, Mode::Target(place)),
                _ => self.walk(child, Mode::Read),
            }
        }
    }

    /// A statement with a WITH clause: its items' bodies, then the rest in their scope.
    fn with_scope(&mut self, map: &Map<String, Value>, with: &Map<String, Value>) {
        self.enter_with(with, |walker| {
            for (key, child) in map {
                if key != "with_clause" {
                    walker.walk(child, Mode::Read);
                }
            }
        });
    }

    /// Walks the WITH items' bodies (a non-recursive item sees only the items before it, a
    /// recursive WITH sees all), then runs `rest` with every item visible.
    fn enter_with(&mut self, with: &Map<String, Value>, rest: impl FnOnce(&mut Self)) {
        let recursive = with
            .get("recursive")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let items: Vec<&Map<String, Value>> = with
            .get("ctes")
            .and_then(Value::as_array)
            .map(|ctes| {
                ctes.iter()
                    .filter_map(|node| node.get("node")?.get("CommonTableExpr")?.as_object())
                    .collect()
            })
            .unwrap_or_default();
        let names: Vec<String> = items
            .iter()
            .filter_map(|item| item.get("ctename")?.as_str().map(str::to_owned))
            .collect();
        for (i, item) in items.iter().enumerate() {
            let visible = if recursive { names.len() } else { i };
            self.scopes.push(names[..visible.min(names.len())].to_vec());
            for (key, child) in item.iter() {
                if key != "ctename" {
                    self.walk(child, Mode::Read);
                }
            }
            self.scopes.pop();
        }
        self.scopes.push(names);
        rest(self);
        self.scopes.pop();
    }

    fn shadowed(&self, name: &str) -> bool {
        self.scopes.iter().flatten().any(|cte| cte == name)
    }

    fn range_var(&mut self, map: &Map<String, Value>, mode: Mode) {
        let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default();
        let schema = Some(text("schemaname")).filter(|s| !s.is_empty());
        let name = text("relname");
        let place = match mode {
            Mode::Read => Place::From,
            Mode::Target(place) => place,
        };
        if place == Place::From && schema.is_none() && self.shadowed(name) {
            return;
        }
        if self.targets.resolve(schema, name).is_none() {
            return;
        }
        let offset = map
            .get("location")
            .and_then(Value::as_i64)
            .and_then(|l| usize::try_from(l).ok());
        let Some(offset) = offset else {
            self.unlocatable = true;
            return;
        };
        self.found.push(Reference {
            offset,
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
            aliased: map.get("alias").is_some_and(|a| !a.is_null()),
            place,
        });
    }
}

/// A `RangeVar`, recognised by its fields: it appears both as a tagged node and as a plain
/// field (`InsertStmt.relation`), so its tag cannot be relied on.
fn is_range_var(map: &Map<String, Value>) -> bool {
    map.contains_key("relname") && map.contains_key("relpersistence") && map.contains_key("inh")
}

/// The byte range of the relation name written at `offset` (`name`, `schema.name`,
/// `"Quoted"."Name"`, spaces around the dots), and the range of its last part; `None` when
/// the text there is not a plain name (a comment inside it, say).
pub fn name_extent(
    sql: &str,
    offset: usize,
) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let bytes = sql.as_bytes();
    let mut position = offset;
    let mut last;
    loop {
        let start = position;
        position = identifier_end(bytes, position)?;
        last = start..position;
        let mut after = position;
        while bytes.get(after).is_some_and(u8::is_ascii_whitespace) {
            after += 1;
        }
        if bytes.get(after) != Some(&b'.') {
            break;
        }
        after += 1;
        while bytes.get(after).is_some_and(u8::is_ascii_whitespace) {
            after += 1;
        }
        position = after;
    }
    Some((offset..position, last))
}

/// The end of the identifier starting at `start`: a quoted one (`""` inside), or an unquoted
/// one as Postgres's scanner reads it (letters, digits, `_`, `$`, and any non-ASCII byte).
fn identifier_end(bytes: &[u8], start: usize) -> Option<usize> {
    let first = *bytes.get(start)?;
    if first == b'"' {
        let mut i = start + 1;
        loop {
            match bytes.get(i)? {
                b'"' if bytes.get(i + 1) == Some(&b'"') => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
    }
    if !(first.is_ascii_alphabetic() || first == b'_' || first >= 0x80) {
        return None;
    }
    let mut i = start + 1;
    while bytes
        .get(i)
        .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80)
    {
        i += 1;
    }
    Some(i)
}

/// Whether the reference at `offset` is the relation of `TABLE [ONLY] name`, which takes no
/// alias.
pub fn after_table_keyword(sql: &str, offset: usize) -> bool {
    let mut before = sql.get(..offset).unwrap_or_default().trim_end();
    let word = |text: &str, word: &str| {
        text.len() >= word.len()
            && text[text.len() - word.len()..].eq_ignore_ascii_case(word)
            && !text[..text.len() - word.len()]
                .bytes()
                .next_back()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'"')
    };
    if word(before, "only") {
        before = before[..before.len() - "only".len()].trim_end();
    }
    word(before, "table")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewriter::{RelationName, ViewTarget};

    fn targets() -> VersionTargets {
        VersionTargets::new(
            "v1",
            vec![ViewTarget {
                table: RelationName::new("public", "model_metadata"),
                view: RelationName::new("public", "model_metadata_v1"),
            }],
        )
    }

    fn offsets(sql: &str) -> Vec<(usize, Place)> {
        match managed_references(sql, &targets()) {
            Reading::Parsed(found) => found.into_iter().map(|r| (r.offset, r.place)).collect(),
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn finds_references_postgres_reads_and_only_those() {
        let sql = "TABLE model_metadata";
        assert_eq!(offsets(sql), vec![(6, Place::From)]);
        let sql = "SELECT * FROM ROWS FROM (generate_series(1, 2)) AS g, public.model_metadata m";
        assert_eq!(
            offsets(sql),
            vec![(sql.find("public").unwrap(), Place::From)]
        );
        // The new table of SELECT INTO, a locking clause's names and strings are not references.
        let sql = "SELECT * INTO model_metadata FROM t FOR UPDATE OF model_metadata";
        assert_eq!(offsets(sql), vec![]);
        let sql = "SELECT 'model_metadata', model_metadata.id FROM other";
        assert_eq!(offsets(sql), vec![]);
        let sql = "CREATE VIEW x AS SELECT * FROM model_metadata";
        assert_eq!(offsets(sql), vec![]);
    }

    #[test]
    fn with_items_shadow_reads_but_not_targets() {
        let sql =
            "WITH model_metadata AS (SELECT * FROM model_metadata) SELECT * FROM model_metadata";
        assert_eq!(
            offsets(sql),
            vec![(sql.find("FROM m").unwrap() + 5, Place::From)]
        );
        let sql = "WITH RECURSIVE model_metadata AS (SELECT 1 UNION ALL SELECT 1 FROM model_metadata) SELECT 1";
        assert_eq!(offsets(sql), vec![]);
        let sql = "WITH model_metadata AS (SELECT 1) UPDATE model_metadata SET id = 1";
        assert_eq!(
            offsets(sql),
            vec![(sql.find("UPDATE m").unwrap() + 7, Place::Target)]
        );
        let sql = "COPY model_metadata TO STDOUT; COPY model_metadata FROM STDIN";
        assert_eq!(
            offsets(sql),
            vec![
                (5, Place::CopyTo),
                (sql.rfind("model").unwrap(), Place::CopyFrom)
            ]
        );
    }

    #[test]
    fn rejected_and_unavailable_are_told_apart() {
        assert!(matches!(
            managed_references("SELEC * FROM model_metadata", &targets()),
            Reading::Rejected(_)
        ));
        // Too deep for the decoder, or for Postgres's parser stack: never a crash, and never
        // a reading that could miss a reference.
        for depth in [200, 1_000] {
            let deep = format!(
                "SELECT * FROM {}model_metadata{}",
                "(SELECT * FROM ".repeat(depth),
                ") s".repeat(depth)
            );
            assert!(
                !matches!(managed_references(&deep, &targets()), Reading::Parsed(_)),
                "{depth}"
            );
        }
        // The worst nesting per byte that fits the limit: a left-deep operator chain.
        let chain = format!("SELECT * FROM model_metadata WHERE {}1", "1+".repeat(8_000));
        assert!(chain.len() <= MAX_CHECKED_BYTES);
        let reading = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || managed_references(&chain, &targets()))
            .unwrap()
            .join()
            .unwrap();
        assert!(matches!(reading, Reading::Unavailable(_)), "{reading:?}");
        let long = format!(
            "SELECT * FROM model_metadata /* {} */",
            "x".repeat(MAX_CHECKED_BYTES)
        );
        assert_eq!(managed_references(&long, &targets()), Reading::TooLong);
    }

    #[test]
    fn name_extents() {
        let sql = "FROM public . \"Model\"\"x\" m";
        let (whole, last) = name_extent(sql, 5).unwrap();
        assert_eq!(&sql[whole], "public . \"Model\"\"x\"");
        assert_eq!(&sql[last], "\"Model\"\"x\"");
        assert_eq!(name_extent("FROM (x)", 5), None);
        assert!(after_table_keyword("TABLE ONLY t", 11));
        assert!(after_table_keyword("x UNION table t", 14));
        assert!(!after_table_keyword("SELECT * FROM mytable t", 22));
    }
}
