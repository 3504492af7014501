//! How a migration's sync trigger functions are named, which both planes need: the control
//! plane creates them so (`control::migrate::sync`), and the proxy recognises an error raised
//! inside one by the function its CONTEXT names. Such an error is about another version's
//! columns: an `up` that failed on a value the writer's version does not show prints that
//! value (the thirty-seventh red-team pass read a v2-only value from "invalid input syntax
//! for type integer: …" at v1).

/// `sync_<migration id>_<up|down>_[u_]<table hash>`.
pub fn name(migration_id: i64, direction: &str, update: bool, table_hash: &str) -> String {
    let update = if update { "u_" } else { "" };
    format!("sync_{migration_id}_{direction}_{update}{table_hash}")
}

/// `sync_<migration id>_up_f_<table hash>`: the function that fills a retyped identity
/// column's stand-in (an `up`, computed for a writer at the new version).
pub fn fill_name(migration_id: i64, table_hash: &str) -> String {
    format!("sync_{migration_id}_up_f_{table_hash}")
}

/// Which way a sync function carries a write: `up` computes the newer version's columns from
/// an older version's write, `down` the older version's from a newer one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    Up,
    Down,
}

/// Whether `context` (an ErrorResponse's CONTEXT lines) runs through a sync function:
/// `PL/pgSQL function viewgate.sync_4_up_u_…() line 12 at assignment` (unqualified when the
/// schema is on the search_path).
pub fn in_context(context: &str) -> bool {
    carried_in_context(context).is_some()
}

/// The way the first sync function `context` runs through carries the write.
pub fn carried_in_context(context: &str) -> Option<Carried> {
    context.match_indices("function ").find_map(|(at, word)| {
        let called = &context[at + word.len()..];
        let called = called
            .strip_prefix("viewgate.")
            .or_else(|| called.strip_prefix("\"viewgate\"."))
            .unwrap_or(called);
        let rest = called.strip_prefix("sync_")?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match &rest[digits..] {
            _ if digits == 0 => None,
            after if after.starts_with("_up_") => Some(Carried::Up),
            after if after.starts_with("_down_") => Some(Carried::Down),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_its_functions_in_a_context() {
        assert!(in_context(&format!(
            "PL/pgSQL function viewgate.{}() line 5 at assignment",
            fill_name(4, "332b4fbd0105")
        )));
        let function = name(4, "up", true, "332b4fbd0105");
        assert_eq!(function, "sync_4_up_u_332b4fbd0105");
        assert!(in_context(&format!(
            "PL/pgSQL function viewgate.{function}() line 12 at assignment"
        )));
        assert!(in_context(
            "SQL statement \"…\"\nPL/pgSQL function sync_12_down_ab() line 3 at assignment"
        ));
        assert_eq!(
            carried_in_context("PL/pgSQL function sync_12_down_ab() line 3 at assignment"),
            Some(Carried::Down)
        );
        assert_eq!(
            carried_in_context(&format!("PL/pgSQL function viewgate.{function}() line 1")),
            Some(Carried::Up)
        );
        assert!(!in_context(
            "PL/pgSQL function public.sync_all() line 3 at RETURN"
        ));
        assert!(!in_context(
            "PL/pgSQL function model_metadata_v2_write() line 30"
        ));
    }
}
