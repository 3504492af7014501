//! Where in a migration file an error in its shape is. The operations are an internally
//! tagged enum (`op = "…"`), which serde reads through a buffer that forgets positions, so
//! TOML reports any error inside one at the file's first `[[operations]]` header, whatever
//! operation it is in (an unknown key in the tenth operation pointed at the first). Each
//! operation is read again on its own to name the one at fault.

use serde::Deserialize;

use super::operation::Operation;

/// The header of one operation, as files write them.
const OPERATION_HEADER: &str = "[[operations]]";

/// `message`, TOML's error reading `text`, with the operation it is in named in its place:
/// its number, its `op` and the line of its header, then what is wrong with it. As it was
/// when every operation reads on its own (the error is elsewhere) or the text is no TOML.
pub fn located(text: &str, message: String) -> String {
    let Ok(table) = text.parse::<toml::Table>() else {
        return message;
    };
    let Some(toml::Value::Array(operations)) = table.get("operations") else {
        return message;
    };
    for (index, value) in operations.iter().enumerate() {
        let Err(error) = Operation::deserialize(value.clone()) else {
            continue;
        };
        let op = value.get("op").and_then(toml::Value::as_str).unwrap_or("?");
        let line = header_line(text, index)
            .map(|line| format!(", line {line}"))
            .unwrap_or_default();
        return format!(
            "operation {} (op = {op:?}{line}): {}",
            index + 1,
            error.message()
        );
    }
    message
}

/// The line (from 1) of the header of operation `index` (from 0), where each is written
/// under its own `[[operations]]`.
fn header_line(text: &str, index: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.split('#').next().unwrap_or("").trim() == OPERATION_HEADER)
        .nth(index)
        .map(|(number, _)| number + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
version = "v2"
from = "v1"

[[operations]]
op = "drop_index"
name = "models_note_idx"

[[operations]]  # the new column
op = "add_column"
table = "models"
colum = { name = "kind", type = "text" }
"#;

    #[test]
    fn names_the_operation_an_error_is_in_and_its_line() {
        assert_eq!(
            located(TWO, "at line 5".into()),
            "operation 2 (op = \"add_column\", line 9): unknown field `colum`, expected one of `table`, `column`, `up`"
        );
        let references = TWO.replace(
            "colum = { name = \"kind\", type = \"text\" }",
            "column = { name = \"kind\", type = \"text\", references = \"kinds(id)\" }",
        );
        assert_eq!(
            located(&references, "at line 5".into()),
            "operation 2 (op = \"add_column\", line 9): invalid type: string \"kinds(id)\", expected a reference as an inline table: { table = \"…\", column = \"…\" }"
        );
        let inline = "version = \"v2\"\nfrom = \"v1\"\noperations = [{ op = \"drop_index\" }]\n";
        assert_eq!(
            located(inline, "at line 3".into()),
            "operation 1 (op = \"drop_index\"): missing field `name`"
        );
    }

    #[test]
    fn leaves_an_error_outside_the_operations_as_it_was() {
        let fine = TWO.replace("colum =", "column =");
        assert_eq!(located(&fine, "elsewhere".into()), "elsewhere");
        assert_eq!(located("not = [toml", "syntax".into()), "syntax");
    }
}
