//! A directory of migration files, as a deploy runs them: `viewgate migrate start <dir>` starts
//! each that has not been started, in order, as Flyway's and pgroll's `migrate` run theirs.
//! Each goes live beside the versions before it, which stay live until `migrate complete`.
//!
//! A migration file's name starts with its number (`0002_model_type.toml`, `10_split.toml`);
//! nothing else in the directory is one (the spec `viewgate.toml` and `schema.sql` live beside
//! them in the seed example). Files run in the order of their numbers, so `10_` follows `9_`
//! whatever the padding; two files with one number are refused, as is a directory with none.
//! Every file is read and checked before the first one starts.

use std::path::{Path, PathBuf};

use super::error::MigrateError;
use super::file::MigrationFile;

/// The migration files of `directory`, read and checked, in the order they run.
pub fn migration_files(directory: &Path) -> Result<Vec<MigrationFile>, MigrateError> {
    let unreadable = |source| MigrateError::Read {
        file: directory.to_owned(),
        source,
    };
    let mut numbered: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(directory).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if let Some(number) = number_of(&path) {
            numbered.push((number, path));
        }
    }
    numbered.sort();
    if numbered.is_empty() {
        return Err(MigrateError::State(format!(
            "{} holds no migration file: a migration file's name is its number, then `_` and a name, ending in .toml (0002_model_type.toml)",
            directory.display()
        )));
    }
    if let Some(pair) = numbered.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(MigrateError::State(format!(
            "{} and {} have the same number, so their order is not known: renumber one",
            pair[0].1.display(),
            pair[1].1.display()
        )));
    }
    numbered
        .iter()
        .map(|(_, path)| MigrationFile::load(path))
        .collect()
}

/// The number a migration file's name starts with; `None` for a file that is not one.
fn number_of(path: &Path) -> Option<u64> {
    if path.extension()? != "toml" || !path.is_file() {
        return None;
    }
    let name = path.file_stem()?.to_str()?;
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    name[..digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATION: &str = "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"add_column\"\ntable = \"t\"\ncolumn = { name = \"c\", type = \"text\" }\n";

    fn directory(files: &[(&str, &str)]) -> tempfile::TempDir {
        let directory = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            std::fs::write(directory.path().join(name), text).expect("written");
        }
        directory
    }

    fn names(files: &[MigrationFile]) -> Vec<String> {
        files
            .iter()
            .map(|file| {
                file.path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn numbered_toml_files_run_in_the_order_of_their_numbers() {
        let directory = directory(&[
            ("10_later.toml", &MIGRATION.replace("v2", "v11")),
            ("0002_first.toml", MIGRATION),
            ("9_next.toml", &MIGRATION.replace("v2", "v9")),
            ("viewgate.toml", "[[tables]]\nname = \"t\"\n"),
            ("schema.sql", "CREATE TABLE t (id int);"),
            ("0003_notes.md", "not a migration"),
        ]);
        let files = migration_files(directory.path()).expect("loads");
        assert_eq!(
            names(&files),
            ["0002_first.toml", "9_next.toml", "10_later.toml"]
        );
    }

    #[test]
    fn a_directory_without_migrations_or_with_one_number_twice_is_refused() {
        let empty = directory(&[("viewgate.toml", "")]);
        let error = migration_files(empty.path()).unwrap_err().to_string();
        assert!(error.contains("holds no migration file"), "{error}");

        let twice = directory(&[("0002_a.toml", MIGRATION), ("2_b.toml", MIGRATION)]);
        let error = migration_files(twice.path()).unwrap_err().to_string();
        assert!(
            error.contains("0002_a.toml") && error.contains("2_b.toml"),
            "{error}"
        );

        let broken = directory(&[("0002_a.toml", MIGRATION), ("0003_b.toml", "version = ")]);
        let error = migration_files(broken.path()).unwrap_err().to_string();
        assert!(
            error.contains("0003_b.toml"),
            "read before any starts: {error}"
        );
    }
}
