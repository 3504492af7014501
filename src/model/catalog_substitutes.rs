//! The catalog relations a version's clients see through substitutes, and where those live.
//!
//! Introspection (psql's `\d`, SQLAlchemy's reflection, JDBC's `DatabaseMetaData`,
//! `information_schema` queries) reads the system catalogs, where a managed table is the base
//! table and its versions are views of other names. Each applied version therefore gets a
//! schema of its own (`viewgate_catalog_<version>`, made by the `version_catalog.sql.j2`
//! template) holding a substitute for each relation listed here: the live catalog, except that
//! the version's view reads as the managed table. The rewriter sends a version's references to
//! these relations there. Both planes read the lists from this file, so the relations the
//! templates create and the ones the rewriter substitutes cannot drift apart.

/// The setting that decides how unqualified names resolve.
pub const SEARCH_PATH: &str = "search_path";

/// The built-in that sets a setting from an expression.
pub const SET_CONFIG: &str = "set_config";

/// What may put `information_schema` on a search_path, where an unqualified `columns` would
/// read the real one: a version with substitutes reads every statement naming these
/// (`rewriter::search_path_catalog`).
pub const SEARCH_PATH_SETTERS: &[&str] = &[SEARCH_PATH, SET_CONFIG];

/// The setting a session declares its version in, as written in SET and SHOW
/// (case-insensitive); on the server, what the migrations' sync triggers read.
pub const VERSION_SETTING: &str = "viewgate.version";

/// The word every name of viewgate's own (the version setting, the substitutes' schemas)
/// starts with: statements naming it are read (`rewriter::reading_settings`).
pub const VIEWGATE_WORD: &str = "viewgate";

/// The setting that decides whether a backslash escapes inside `'…'` literals.
pub const STANDARD_CONFORMING_STRINGS: &str = "standard_conforming_strings";

/// The setting that decides which of the server's messages reach the client: at `log` or a
/// `debug` level, the parse and plan trees (`debug_print_*`) and auto_explain's plans, which
/// name every base column (the sixteenth red-team pass).
pub const CLIENT_MIN_MESSAGES: &str = "client_min_messages";

/// The levels of `client_min_messages` a versioned session may set: none sends LOG or DEBUG
/// messages.
pub const QUIET_MESSAGE_LEVELS: &[&str] = &["notice", "warning", "error"];

/// The view whose UPDATE rule changes any setting, by a name and value it may compute.
pub const PG_SETTINGS: &str = "pg_settings";

/// What may change how Postgres reads the session's later text, or the version the server
/// believes the session writes at (`rewriter::reading_settings`): every version with managed
/// tables reads statements naming these, and refuses them in bodies and in texts too long to
/// check.
pub const READING_SETTERS: &[&str] = &[
    STANDARD_CONFORMING_STRINGS,
    CLIENT_MIN_MESSAGES,
    PG_SETTINGS,
    SET_CONFIG,
    VIEWGATE_WORD,
];

/// `SET SCHEMA 'a'` sets the search_path too, and its value may be split into adjacent
/// literals (`'information_' 'schema'`) that name neither setting: the word every version
/// with managed tables reads statements for, and refuses in a body, where values may be
/// spelled with escapes.
pub const SCHEMA_WORD: &str = "schema";

/// Prefix of the schema holding a version's catalog substitutes; the version name follows.
pub const SUBSTITUTE_SCHEMA_PREFIX: &str = "viewgate_catalog_";

/// `pg_catalog` relations with a substitute, found by their name qualified with `pg_catalog`
/// or unqualified (`pg_catalog` is always searched first for unqualified names).
pub const PG_CATALOG_SUBSTITUTES: &[&str] = &[
    "pg_class",
    "pg_namespace",
    "pg_attribute",
    "pg_attrdef",
    "pg_index",
    "pg_constraint",
    "pg_tables",
    "pg_views",
    "pg_indexes",
    "pg_description",
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic_ext",
    "pg_rewrite",
    "pg_trigger",
    "pg_proc",
    "pg_stat_all_indexes",
    "pg_stat_sys_indexes",
    "pg_stat_user_indexes",
    "pg_statio_all_indexes",
    "pg_statio_sys_indexes",
    "pg_statio_user_indexes",
    "pg_policy",
    "pg_policies",
    "pg_rules",
    "pg_publication_rel",
    "pg_publication_tables",
    "pg_depend",
    // Without what is in viewgate's own schemas, which pg_namespace leaves out (pg_dump failed
    // on a type or function whose schema it could not find).
    "pg_type",
    "pg_event_trigger",
    "pg_sequence",
    "pg_sequences",
    "pg_statio_all_sequences",
    "pg_statio_sys_sequences",
    "pg_statio_user_sequences",
    "pg_stat_all_tables",
    "pg_stat_sys_tables",
    "pg_stat_user_tables",
    "pg_stat_xact_all_tables",
    "pg_stat_xact_sys_tables",
    "pg_stat_xact_user_tables",
    "pg_statio_all_tables",
    "pg_statio_sys_tables",
    "pg_statio_user_tables",
    // The session's own statement text, as the functions below.
    "pg_stat_activity",
    "pg_prepared_statements",
    "pg_cursors",
];

/// The `pg_catalog` substitutes among those that list indexes by name with their statistics:
/// without the indexes the version does not see (an index's default name carries its
/// columns': `model_metadata_schema_version_idx`).
pub const INDEX_STATISTICS_VIEWS: &[&str] = &[
    "pg_stat_all_indexes",
    "pg_stat_sys_indexes",
    "pg_stat_user_indexes",
    "pg_statio_all_indexes",
    "pg_statio_sys_indexes",
    "pg_statio_user_indexes",
];

/// The `pg_catalog` substitutes among those that list tables by name with their statistics:
/// a managed table's base table as the version's table, without the relations the version
/// does not see and viewgate's own tables (monitoring through the proxy listed the catalog's).
pub const TABLE_STATISTICS_VIEWS: &[&str] = &[
    "pg_stat_all_tables",
    "pg_stat_sys_tables",
    "pg_stat_user_tables",
    "pg_stat_xact_all_tables",
    "pg_stat_xact_sys_tables",
    "pg_stat_xact_user_tables",
    "pg_statio_all_tables",
    "pg_statio_sys_tables",
    "pg_statio_user_tables",
];

/// The schema `PG_CATALOG_SUBSTITUTES` stand in for.
pub const PG_CATALOG: &str = "pg_catalog";

/// `information_schema` views with a substitute, found only when qualified with
/// `information_schema` (an unqualified `columns` is far likelier a table of the application).
pub const INFORMATION_SCHEMA_SUBSTITUTES: &[&str] = &[
    "columns",
    "tables",
    "views",
    "table_constraints",
    "key_column_usage",
    "constraint_column_usage",
    "constraint_table_usage",
    "column_privileges",
    "role_column_grants",
    "column_udt_usage",
    "column_domain_usage",
    "column_column_usage",
    "referential_constraints",
    "check_constraints",
    "triggers",
    "triggered_update_columns",
    "routines",
    "parameters",
    "schemata",
    "sequences",
];
/// The `information_schema` substitutes among those that list a table's columns (privileges,
/// types, domains, generation): for a managed table, its version's view's own rows, so a
/// column the version hides is never named.
pub const VIEW_COLUMN_RELATIONS: &[&str] = &[
    "column_privileges",
    "role_column_grants",
    "column_udt_usage",
    "column_domain_usage",
    "column_column_usage",
];

/// The schema `INFORMATION_SCHEMA_SUBSTITUTES` stand in for.
pub const INFORMATION_SCHEMA: &str = "information_schema";

/// `pg_catalog` functions with a substitute in the same schema, found by their name qualified
/// with `pg_catalog` or unqualified: the ones introspection calls with a managed table's (the
/// version's view's) oid or an oid the substitutes show for it (an index, a constraint, a
/// statistics object, the view's rule), which print or read the base table's names and
/// comments, or the view's definition; and the object printers, which name a column of a
/// relation the version does not see from the oids `pg_depend` lists; and the publication
/// lister behind `pg_publication_tables`, which prints its tables' row filters and columns.
/// `pg_get_serial_sequence`, which takes the table by name: the version's view's (as
/// `attrelid::regclass::text` prints it over the `pg_attribute` substitute) or the base
/// table's, and the version's column name, which it maps to the base column that owns the
/// sequence (a hidden one is missing, as in Postgres, rather than NULL).
/// The disk size readers, called with the version's view's oid over the `pg_class` substitute
/// (psql's `\dt+`): the base table's size, where the view's is 0.
/// Last, what prints the text Postgres received from the session itself: the statement running
/// now (`current_query()`, the session's own row of `pg_stat_activity`, its parallel workers'
/// and the functions behind them) and its prepared statements and cursors (which keep the whole
/// query string they came in). That text is the proxy's rewrite, which at a
/// trigger-backed version spells an upsert's or MERGE's mapping out (hidden columns, hidden
/// defaults, write expressions: the forty-fifth red-team pass); the substitutes show NULL.
pub const SUBSTITUTE_FUNCTIONS: &[&str] = &[
    "pg_get_indexdef",
    "pg_get_constraintdef",
    "pg_get_viewdef",
    "pg_get_ruledef",
    "pg_get_statisticsobjdef",
    "pg_get_statisticsobjdef_columns",
    "pg_get_statisticsobjdef_expressions",
    "col_description",
    "obj_description",
    "pg_describe_object",
    "pg_identify_object",
    "pg_identify_object_as_address",
    "pg_get_triggerdef",
    "pg_get_functiondef",
    "pg_get_function_arguments",
    "pg_get_function_identity_arguments",
    "pg_get_function_result",
    "pg_get_function_arg_default",
    "pg_get_function_sqlbody",
    "pg_get_publication_tables",
    "pg_get_serial_sequence",
    "pg_table_size",
    "pg_total_relation_size",
    "pg_indexes_size",
    "pg_relation_size",
    "current_query",
    "pg_stat_get_activity",
    "pg_stat_get_backend_activity",
    "pg_prepared_statement",
    "pg_cursor",
];

/// The substitutes' functions that read a relation name a statement computes or binds as the
/// version's (`rewriter/references_relation_names.rs` wraps such a name in one): the name for
/// `to_regclass(…)`, and the casts to `regclass` and `regtype`.
pub const VERSION_RELATION_NAME: &str = "version_relation_name";
pub const VERSION_REGCLASS: &str = "version_regclass";
pub const VERSION_REGTYPE: &str = "version_regtype";
/// The substitutes' function that prints a relation's oid by the version's name, which the
/// rewriter wraps a cast to `regclass` cast on to text in (`x::regclass::text`).
pub const VERSION_RELATION_TEXT: &str = "version_relation_text";
/// Those functions, which a version's substitutes must all have for the rewriter to use them.
pub const VERSION_NAME_READERS: &[&str] = &[
    VERSION_RELATION_NAME,
    VERSION_REGCLASS,
    VERSION_REGTYPE,
    VERSION_RELATION_TEXT,
];

/// The substitutes' function that answers sqlx's `EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE
/// sqlx_s_N(NULL, …)` with the plan's outline (`router::explain_execute` sends it there).
pub const EXPLAIN_EXECUTE: &str = "explain_execute";
/// It and the function that outlines a plan node, which a version's substitutes must have.
pub const PLAN_OUTLINERS: &[&str] = &[EXPLAIN_EXECUTE, "explain_outline"];

/// Words a statement that may compute a relation's name holds (`::regclass`, `::regtype`,
/// `to_regclass(…)`): with substitutes, such a statement is read for the name to wrap.
pub const RELATION_TYPE_MENTIONS: &[&str] = &["regclass", "regtype"];

/// The schema holding `version`'s substitutes. Version names are at most 31 characters of
/// `[a-z0-9_]`, so the result is a plain identifier within Postgres's 63-byte limit.
pub fn substitute_schema(version: &str) -> String {
    format!("{SUBSTITUTE_SCHEMA_PREFIX}{version}")
}

/// Every substitute relation, as (catalog schema, relation name).
pub fn substitutes() -> impl Iterator<Item = (&'static str, &'static str)> {
    PG_CATALOG_SUBSTITUTES
        .iter()
        .map(|name| (PG_CATALOG, *name))
        .chain(
            INFORMATION_SCHEMA_SUBSTITUTES
                .iter()
                .map(|name| (INFORMATION_SCHEMA, *name)),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_views_are_pg_catalog_substitutes() {
        for name in INDEX_STATISTICS_VIEWS.iter().chain(TABLE_STATISTICS_VIEWS) {
            assert!(PG_CATALOG_SUBSTITUTES.contains(name), "{name}");
        }
    }

    #[test]
    fn view_column_relations_are_information_schema_substitutes() {
        for name in VIEW_COLUMN_RELATIONS {
            assert!(INFORMATION_SCHEMA_SUBSTITUTES.contains(name), "{name}");
        }
    }

    #[test]
    fn substitute_names_are_distinct_plain_identifiers() {
        let mut names: Vec<&str> = substitutes().map(|(_, name)| name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "one schema holds them all");
        assert!(
            names
                .iter()
                .all(|name| name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
        assert_eq!(substitute_schema("v2"), "viewgate_catalog_v2");
    }
}
