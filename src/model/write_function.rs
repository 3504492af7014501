//! How a trigger-backed view's write function is named, which both planes need: the control
//! plane creates it (`control::views::plan`), and the proxy recognises an error raised inside
//! one by the function its CONTEXT names. The function's statements name the base table's
//! columns, hidden ones too, with the version's hidden defaults and write expressions, and
//! Postgres quotes the failing statement whole in an error's CONTEXT (the forty-fourth
//! red-team pass read `model_type` and `schema_version` from a unique violation's at a version
//! that hides them): a versioned session is shown the function's name in its place.

/// What a view's name takes to name its write function (`model_metadata_v2_write`).
pub const SUFFIX: &str = "_write";

/// The write function of view `view`.
pub fn name(view: &str) -> String {
    format!("{view}{SUFFIX}")
}

/// The CONTEXT a versioned session is shown in place of `context` when the error arose inside
/// the write function of one of `views` (schema, name): the frames up to that function's give
/// way to one line naming it; the frames around it (the client's own function or DO block)
/// stand. `None` when no such function is in it.
pub fn hidden_in_context<'a>(
    context: &str,
    views: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    let mut innermost_end: Option<(usize, String)> = None;
    for (schema, view) in views {
        let function = quote(&name(view));
        for called in [
            format!("function {function}("),
            format!("function {}.{function}(", quote(schema)),
        ] {
            if let Some(at) = context.rfind(&called) {
                let end = context[at..].find('\n').map_or(context.len(), |n| at + n);
                if innermost_end.as_ref().is_none_or(|(known, _)| end > *known) {
                    innermost_end = Some((end, function.clone()));
                }
            }
        }
    }
    let (end, function) = innermost_end?;
    let shown = format!(
        "PL/pgSQL function {function}(), the write trigger of this version's view (viewgate: its statement is not shown)"
    );
    Some(match context[end..].strip_prefix('\n') {
        Some(outer) if !outer.is_empty() => format!("{shown}\n{outer}"),
        _ => shown,
    })
}

/// `name` as Postgres prints an identifier: bare when it is a plain lower-case one, quoted
/// otherwise.
fn quote(name: &str) -> String {
    let plain = name
        .bytes()
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIEWS: [(&str, &str); 2] = [("public", "model_metadata_v4"), ("v5", "Models")];

    #[test]
    fn the_write_functions_statement_gives_way_to_its_name() {
        let context = "SQL statement \"INSERT INTO \"public\".\"model_metadata\" (\"id\", \"model_type\")\n        VALUES (NEW.\"id\", (4))\"\nPL/pgSQL function model_metadata_v4_write() line 8 at SQL statement";
        assert_eq!(
            hidden_in_context(context, VIEWS).as_deref(),
            Some(
                "PL/pgSQL function model_metadata_v4_write(), the write trigger of this version's view (viewgate: its statement is not shown)"
            )
        );
    }

    #[test]
    fn the_clients_own_frames_around_it_stand() {
        let context = "SQL statement \"UPDATE \"public\".\"model_metadata\" SET \"model_type\" = 1\"\nPL/pgSQL function v5.\"Models_write\"() line 3 at SQL statement\nSQL statement \"INSERT INTO model_metadata_v4 VALUES (1)\"\nPL/pgSQL function inline_code_block line 1 at SQL statement";
        let shown = hidden_in_context(context, VIEWS).unwrap();
        assert!(!shown.contains("model_type"), "{shown}");
        assert!(
            shown.ends_with("SQL statement \"INSERT INTO model_metadata_v4 VALUES (1)\"\nPL/pgSQL function inline_code_block line 1 at SQL statement"),
            "{shown}"
        );
    }

    #[test]
    fn other_functions_are_not_its() {
        for context in [
            "PL/pgSQL function audit_write() line 3 at SQL statement",
            "PL/pgSQL function model_metadata_v2_write() line 8 at SQL statement",
            "",
        ] {
            assert_eq!(hidden_in_context(context, VIEWS), None, "{context}");
        }
    }
}
