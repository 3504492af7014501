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
    let callers: Vec<(String, String)> = views
        .into_iter()
        .flat_map(|(schema, view)| {
            let function = quote(&name(view));
            [
                (format!("{FRAME}{function}("), function.clone()),
                (format!("{FRAME}{}.{function}(", quote(schema)), function),
            ]
        })
        .collect();
    // A frame is a line of its own; the same words inside a quoted statement are the
    // client's text, not a call (the forty-fifth red-team pass).
    let (innermost, function) = context
        .split('\n')
        .enumerate()
        .filter_map(|(number, line)| {
            callers
                .iter()
                .find(|(caller, _)| line.starts_with(caller.as_str()))
                .map(|(_, function)| (number, function))
        })
        .last()?;
    let shown = format!(
        "{FRAME}{function}(), the write trigger of this version's view (viewgate: its statement is not shown)"
    );
    let outer: Vec<&str> = context.split('\n').skip(innermost + 1).collect();
    Some(if outer.is_empty() {
        shown
    } else {
        format!("{shown}\n{}", outer.join("\n"))
    })
}

/// How a PL/pgSQL function's frame begins in a context.
const FRAME: &str = "PL/pgSQL function ";

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
    fn its_name_in_the_clients_own_statement_is_no_frame() {
        let context = "SQL statement \"SELECT 1/0, '\nPL/pgSQL function x() function model_metadata_v4_write('\"\nPL/pgSQL function inline_code_block line 1 at PERFORM";
        assert_eq!(hidden_in_context(context, VIEWS), None);
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
