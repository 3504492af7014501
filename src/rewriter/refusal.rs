//! `Refusal`: a statement the rewriter could read but refuses all the same, because viewgate
//! would have to write the base table for it and cannot do so exactly (a COPY … FROM column
//! the version lacks, an upsert form it cannot map). The proxy answers it with 42601 and the
//! position (42703 or 42P01 where it names what the version does not have: [`Undefined`]);
//! it is never forwarded. So is DDL that would keep a managed table's whole shape (a view's
//! definition, a stored row type, a function's body: `definitions.rs`), and DDL that would
//! change its columns, name, schema or existence under every version
//! (`postgres_grammar_structure.rs`), or name a column a version stores under another base
//! name (`postgres_grammar_columns.rs`).

/// Why a read statement is refused. `offset` is a byte offset into the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub offset: Option<usize>,
    /// What the statement names that the version does not have, if that is why.
    pub undefined: Option<Undefined>,
}

impl Refusal {
    pub fn new(reason: impl Into<String>, offset: Option<usize>) -> Self {
        Refusal {
            reason: reason.into(),
            offset,
            undefined: None,
        }
    }

    /// A statement naming a column the version does not have: 42703, as Postgres tells a
    /// column its table lacks (and INSERT, UPDATE or COPY … TO through the version's view is
    /// told); `reason` says it in Postgres's words with the version ([`missing_column`]).
    pub fn undefined_column(reason: String, offset: Option<usize>) -> Self {
        Refusal {
            undefined: Some(Undefined::Column),
            ..Refusal::new(reason, offset)
        }
    }
}

/// Postgres's wording of a column `table` lacks, at `version`.
pub fn missing_column(column: &str, table: &str, version: &str) -> String {
    format!("column \"{column}\" of relation \"{table}\" does not exist at version {version}")
}

/// What a refused statement names that the version's clients do not have. Postgres tells
/// such a statement by its SQLSTATE (undefined table, undefined column), and an application
/// at that version, whose introspection does not show the name either, catches that code
/// (psycopg's `UndefinedColumn`, Django's checks), not a syntax error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undefined {
    /// A relation (42P01), as written (`schema.name` or `name`).
    Relation(String),
    /// A column (42703); the reason names it in Postgres's words.
    Column,
}

use super::postgres_grammar::{ColumnDdl, Place, Reference, StoredAs, TableChange};
use super::targets::VersionTargets;
use crate::model::view_mapping::ViewMapping;

/// What Sequelize's `Model.findOrCreate` sends on Postgres: a temporary function returning
/// the table's row type, whose body inserts into the table (refused twice over).
const SEQUELIZE_FIND_OR_CREATE: &str = "sequelize_caught_exception";

/// The refusal `reason` of `sql`, with what to do instead where a library sent it.
pub fn with_library_advice(reason: String, sql: &str) -> String {
    if sql.contains(SEQUELIZE_FIND_OR_CREATE) {
        return format!(
            "{reason}. This is Sequelize's findOrCreate, which builds such a function: use findCreateFind (a find, a create, and a find again on a unique violation), or findOne then create in a transaction"
        );
    }
    reason
}

/// Why a statement whose reference stands at `place` is refused, if that place is one where
/// viewgate refuses a managed table (`definitions.rs`).
pub fn of_place(place: Place, table: &str, version: &str, view: &str) -> Option<String> {
    match place {
        Place::ViewDefinition => Some(view_definition(table, version, view)),
        Place::StoredShape => Some(format!(
            "DDL is not rewritten, and this statement would keep the row type or the columns of managed table \"{table}\" itself, its base table's, which may have columns version \"{version}\" does not have, now or once a migration adds them; use the version's view ({view}) or its row type, or run the statement over a direct connection to build on the base table (inheriting from or partitioning a managed table can only be done there)"
        )),
        Place::FunctionBody => Some(format!(
            "a function's or DO block's body is not rewritten: Postgres reads it when it runs, under the caller's search_path, and as written it may read managed table \"{table}\" whole, with columns version \"{version}\" does not have; name the version's view ({view}) or another schema's table explicitly in the body, or create it over a direct connection"
        )),
        Place::UnseenSql => Some(format!(
            "a function's or DO block's body that may run SQL viewgate cannot see (built at run time with EXECUTE or a built-in that runs a query from a string, reading pg_stats or the catalog, changing the search_path, or in a language other than SQL and PL/pgSQL) is not accepted from a session at version \"{version}\": that SQL could read managed table \"{table}\" whole, with columns the version does not have; create it over a direct connection, or name the version's view ({view}) in plain SQL"
        )),
        Place::BaseArrayType => Some(format!(
            "\"_{table}\" is the array type of managed table \"{table}\" itself, whose rows have columns version \"{version}\" does not have; write {table}[] (viewgate rewrites it to the version's row type, {view}[])"
        )),
        Place::TableStructure(change) => Some(table_structure(change, table, version, view)),
        Place::QueryText => Some(format!(
            "the relations a function reads from a string are not rewritten, and this call may read managed table \"{table}\" whole, with columns version \"{version}\" does not have; name the version's view ({view}) in a constant argument, or read the version's views one by one"
        )),
        _ => None,
    }
}

/// Why DDL making `change` to managed table `table` is refused at `version`, whose clients
/// read it through `view`: it would reach the base table under every version and no version's
/// view (each lists its columns), or leave viewgate's spec and a live migration's sync
/// triggers naming a table or column that is gone.
pub fn table_structure(change: TableChange, table: &str, version: &str, view: &str) -> String {
    let effect = match change {
        TableChange::AddColumn => format!(
            "would add the column to its base table under every version, and no version's view would show it (at version \"{version}\" the table is read through its view, {view}, which lists its columns: the next query naming the new column fails with 42703)"
        ),
        TableChange::DropColumn => "would drop the column from its base table under every version, behind the spec viewgate generated the versions' views from (with CASCADE, the views reading it are dropped too)".to_owned(),
        TableChange::AlterColumnType => "would change the column's type in its base table under every version, behind the spec viewgate generated the versions' views and a live migration's sync triggers from".to_owned(),
        TableChange::RenameColumn => "would rename the column in its base table under every version, behind viewgate's spec and a live migration's sync triggers, which name it".to_owned(),
        TableChange::RenameTable => "would rename its base table behind viewgate's spec and catalog and a live migration's sync triggers, which name it".to_owned(),
        TableChange::SetSchema => "would move its base table out of the schema viewgate's spec and catalog and a live migration's sync triggers name it in".to_owned(),
        TableChange::DropTable => "would drop its base table under every version (with CASCADE, every version's view with it)".to_owned(),
    };
    let instead = match change.operation() {
        Some(operation) => format!(
            "change a managed table with a migration (viewgate migrate start, operation \"{operation}\"; viewgate migrate convert writes one from an ORM's SQL), or run this DDL over a direct connection to Postgres"
        ),
        None => {
            "run this DDL over a direct connection to Postgres, and change viewgate's spec to match"
                .to_owned()
        }
    };
    format!(
        "{} on \"{table}\", a table viewgate manages, {effect}; {instead}",
        change.statement()
    )
}

/// Why DDL naming a column of managed table `table` is refused at `version`, whose view maps
/// it by `mapping`: the column is stored under another base name (`stored`, by its index in
/// the mapping), and DDL names base columns, so as written it would reach another version's
/// column, or none (`postgres_grammar_columns.rs`).
pub fn column_storage(
    command: ColumnDdl,
    stored: StoredAs,
    table: &str,
    version: &str,
    mapping: &ViewMapping,
) -> String {
    let statement = command.statement();
    let effect = command.effect();
    let (StoredAs::Elsewhere(index) | StoredAs::Hidden(index)) = stored;
    let Some(column) = mapping.columns.get(index) else {
        return format!(
            "{statement} on \"{table}\" names a column that version \"{version}\" stores under another name in the base table; run it over a direct connection to Postgres"
        );
    };
    let name = &column.name;
    let Some(base) = column.base_column.as_deref() else {
        return format!(
            "{statement} on \"{table}\" names column \"{name}\", which at version \"{version}\" is an expression over the base table's columns, stored in no base column of its own: Postgres would look for \"{name}\" in the base table, where it is not the version's column. Run it over a direct connection to Postgres, written over the base columns the expression reads"
        );
    };
    let why = match stored {
        StoredAs::Hidden(_) => format!(
            "names column \"{base}\", which version \"{version}\" does not show under that name: it is the base column the version's \"{name}\" is stored in (a migration renames or replaces a column in the base table only at its complete)"
        ),
        StoredAs::Elsewhere(_) if base.starts_with(&format!("_vg_{version}_")) => format!(
            "names column \"{name}\", which at version \"{version}\" is stored in base column \"{base}\" while the migration to {version} is live (the base table's \"{name}\" is an older version's): {effect} the older version's column"
        ),
        StoredAs::Elsewhere(_) if base.starts_with("_vg_") => format!(
            "names column \"{name}\", which at version \"{version}\" is stored in base column \"{base}\" while a migration that replaces it is live (the base table's \"{name}\", if it has one, is another version's): {effect} that column, not the version's"
        ),
        StoredAs::Elsewhere(_) => format!(
            "names column \"{name}\", which at version \"{version}\" is stored in base column \"{base}\" under another name (a migration renames a column in the base table only at its complete): Postgres would look for \"{name}\" in the base table, where it is not the version's column"
        ),
    };
    let instead = match command.operation() {
        Some(operation) => format!(
            "Make it with a migration (viewgate migrate start, operation \"{operation}\"), which names the version's columns and makes it on the base ones, or after `viewgate migrate complete`, when the base column has the version's name; or over a direct connection to Postgres, naming base column \"{base}\""
        ),
        None => format!(
            "Run it after `viewgate migrate complete`, when the base column has the version's name (a migration's raw_sql with on_complete = true), or over a direct connection to Postgres, naming base column \"{base}\""
        ),
    };
    format!("{statement} on \"{table}\" {why}. {instead}")
}

/// Why a definition (a view's, rule's or policy's) naming catalog relation `relation`, which
/// the version reads through a substitute, is refused.
pub fn catalog_definition(relation: &str, version: &str) -> String {
    format!(
        "a view's, rule's or policy's definition is not rewritten, and as written this one would keep reading the real \"{relation}\", which describes managed tables with columns version \"{version}\" does not have; query it directly, or create the definition over a direct connection"
    )
}

/// Why `reference`, to what is not this version's (another version's view, catalog or mapping
/// function, a managed table by a name this version does not give it), is refused.
pub fn not_this_versions(targets: &VersionTargets, reference: &Reference) -> String {
    let (schema, name, version) = (
        reference.schema.as_deref(),
        &reference.name,
        &targets.version,
    );
    if targets.is_other_versions_catalog(schema.unwrap_or_default()) {
        other_versions_catalog(schema.unwrap_or_default(), name, version)
    } else if targets.is_hidden_table(schema, name) {
        hidden_table(name, version)
    } else if targets.names_mapping_function(name) {
        mapping_function(name)
    } else if targets.is_relative(schema, name) {
        relative(name, version)
    } else {
        other_version(name, version)
    }
}

/// The relation `reference` names, when what [`not_this_versions`] refuses it for is that
/// the version's clients do not have it (another version's view or catalog, a managed table
/// by a name the version does not give it); `None` for what they have but may not name (a
/// mapping function, a managed table's partition or inheritance relative).
pub fn missing_at_version(targets: &VersionTargets, reference: &Reference) -> Option<String> {
    let schema = reference.schema.as_deref();
    let name = &reference.name;
    let missing = targets.is_other_versions_catalog(schema.unwrap_or_default())
        || targets.is_hidden_table(schema, name)
        || !(targets.names_mapping_function(name) || targets.is_relative(schema, name));
    missing.then(|| match schema {
        Some(schema) => format!("{schema}.{name}"),
        None => name.clone(),
    })
}

/// Why naming `view`, another version's view, is refused in a session at `version`.
pub fn other_version(view: &str, version: &str) -> String {
    format!(
        "\"{view}\" is another version's view, and a session at version \"{version}\" sees only its own; name the managed table (viewgate rewrites it to this version's view), or set viewgate.version to the version you mean"
    )
}

/// Why calling `function`, a version's mapping function, is refused.
pub fn mapping_function(function: &str) -> String {
    format!(
        "\"{function}\" is one of viewgate's mapping functions, which the proxy calls where it writes a base table in a view's stead; a client does not call, replace, rename or drop them, nor name them in a body (another version's compute that version's columns): name the managed table"
    )
}

/// Why naming `table`, a managed table by a name version `version` does not give it, is
/// refused in a session at that version.
pub fn hidden_table(table: &str, version: &str) -> String {
    format!(
        "\"{table}\" is a managed table that version \"{version}\" does not have by this name (it renames the table or does not list it), and a session at that version sees only its own tables; use the version's name for it, or set viewgate.version to the version you mean"
    )
}

/// Why naming `table`, a relative of a managed table (a partition, inheritance child or
/// parent), is refused in a session at `version`.
pub fn relative(table: &str, version: &str) -> String {
    format!(
        "\"{table}\" is a partition, inheritance child or parent of a managed table: it holds or reads the base table's rows, with columns a session at version \"{version}\" does not have; read and write them through the managed table"
    )
}

/// Why a column qualified by `schema.table`, in a statement where another FROM item is
/// named `table`, is refused: the rewrite drops `schema.` (the table gets its name as
/// alias), and Postgres would then bind the column to the nearest item of that name.
pub fn schema_qualified_beside_namesake(table: &str) -> String {
    format!(
        "a column qualified by schema and table \"{table}\" where another FROM item is also named \"{table}\": viewgate gives the table its name as alias, and the column could then name the other item; alias the table and qualify the column by that alias"
    )
}

/// Why naming `schema.name`, in another version's schema of catalog substitutes, is refused
/// in a session at `version`.
pub fn other_versions_catalog(schema: &str, name: &str, version: &str) -> String {
    format!(
        "\"{schema}.{name}\" is another version's catalog, which describes columns a session at version \"{version}\" does not have; name the catalog relation itself (pg_catalog.pg_class, information_schema.columns, …): viewgate shows this version's"
    )
}

/// Why a string constant continued after a `--` comment is refused.
pub const STRING_CONTINUED_AFTER_COMMENT: &str = "a string constant continues after a comment ('a' -- …, then 'b' on the next line), which PostgreSQL reads as one string and the parser viewgate checks with reads as two; put the parts together, or on consecutive lines without a comment between them";

/// Why a MERGE or an upsert whose text PostgreSQL's lexer splits otherwise than viewgate's
/// parser is refused: such a statement goes to the base table with its column references
/// mapped by viewgate's reading, and a reference only Postgres sees (`#--` is an operator and a
/// comment to Postgres, the start of a `$$` string to sqlparser) would read the base row.
pub const LEXERS_DISAGREE: &str = "PostgreSQL's lexer reads this text's tokens otherwise than the parser viewgate rewrites with (an operator written against a comment, such as #-- or ?--, or strings split by a line break), and a MERGE or an upsert is written to the base table by that parser's reading; put a space between an operator and a comment";

/// Why a call of `function`, a printer with a substitute, that viewgate's own parser did not
/// read (in DDL, or in syntax or a spelling it cannot read) is refused at `version`.
pub fn unsubstituted_printer(function: &str, version: &str) -> String {
    format!(
        "{function} is called where viewgate cannot send it to version \"{version}\"'s substitute (in DDL such as a DEFAULT or a CHECK, in syntax viewgate's parser cannot read, or spelled with escapes), and the real one prints definitions naming columns the version does not have; call it in a plain query"
    )
}

/// Why a call of `function` in attribute notation (`(argument).function`) is refused in a
/// session at `version`.
pub fn field_call(function: &str, version: &str) -> String {
    format!(
        "(…).{function} calls {function} in attribute notation, and viewgate must see it called by its own name (it may read a relation named in a string, print a definition naming columns version \"{version}\" does not have, or change the search_path); write {function}(…)"
    )
}

/// Why DDL making `function` callable under another name (an operator, an aggregate, a
/// type's or cast's function) is refused in a session at `version`.
pub fn aliased_built_in(function: &str, version: &str) -> String {
    format!(
        "an operator, aggregate, type, cast or transform over {function} would call it under another name, and viewgate must see it called by its own (it may read a relation named in a string, print a definition naming columns version \"{version}\" does not have, or change the search_path); call {function} by name, or create this over a direct connection"
    )
}

/// Why a statement that may put `information_schema` or a schema of catalog substitutes on
/// the search_path is refused in a session at `version`: also a `set_config` whose setting
/// name is computed, which may be the search_path (the twenty-sixth red-team pass found the
/// message spoke of the path alone).
pub fn information_schema_path(version: &str) -> String {
    format!(
        "this may put information_schema (or a viewgate_catalog_ schema) on the search_path, where an unqualified name such as columns or tables would read a catalog describing columns version \"{version}\" does not have; leave it off the search_path and write information_schema.columns (viewgate shows this version's), and give set_config a constant setting name, and for search_path a constant value"
    )
}

/// Why a text that PostgreSQL's parser (libpg_query) rejects is refused rather than sent.
pub fn postgres_rejects(message: &str) -> String {
    format!(
        "PostgreSQL's parser rejects it ({message}); viewgate checks statements with PostgreSQL 17's grammar and sends none it cannot check, since an older server may read the text otherwise"
    )
}

/// Why `EXPLAIN (VERBOSE)` of a statement reading a managed table is refused.
pub fn verbose_explain(version: &str) -> String {
    format!(
        "EXPLAIN VERBOSE lists the columns each scan outputs, and under version \"{version}\"'s views the planner may scan a base table's every column, including ones this version does not have; EXPLAIN without VERBOSE shows the same plan"
    )
}

/// Why a statement that may turn `standard_conforming_strings` off, lower
/// `client_min_messages`, set `viewgate.version` by a function, or writes `pg_settings`, is
/// refused (`reading_settings.rs`).
pub fn reading_setting() -> String {
    "viewgate reads string literals as PostgreSQL does with standard_conforming_strings on, keeps the server's LOG and DEBUG messages (query trees naming every base column) from a version's client, and follows viewgate.version only as SET changes it; this statement may turn standard_conforming_strings off, set client_min_messages below notice, set viewgate.version through set_config, or change a setting through pg_settings, where viewgate cannot follow; keep standard_conforming_strings on (write E'…' for backslash escapes) and client_min_messages at notice or above, change the version with SET viewgate.version, and change other settings with SET or set_config with a constant name".to_owned()
}

/// Why `CREATE [MATERIALIZED] VIEW` over managed table `table` is refused: a view's
/// definition is not rewritten (built on the version's view, it would hold the view in place
/// against `views apply` and `migrate complete`), and as written it reads the base table.
pub fn view_definition(table: &str, version: &str, view: &str) -> String {
    format!(
        "a view's definition is not rewritten, and as written this one reads managed table \"{table}\" whole, with columns version \"{version}\" does not have; name the version's view ({view}) to build on this version, or create the view over a direct connection to build it on the base table"
    )
}
