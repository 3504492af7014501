//! The layer rule and the codemap, checked: reads every `src/**/*.rs`, resolves its imports
//! (`use crate::…`, `use super::…`, `use self::…`, braced and multi-line groups, and inline
//! `crate::…`/`super::…` paths in code) to the module and the file they name, and fails on
//!
//! 1. an import against the allowed direction ([`ALLOWED`], the table in docs/ARCHITECTURE.md),
//!    naming the file and line;
//! 2. a cycle between top-level modules, or between files;
//! 3. a codemap that lists a file that does not exist, or leaves one out.
//!
//! A `mod.rs`'s (or `lib.rs`'s) `pub mod` and `pub use` lines of its own children are not
//! dependencies; a name such a file re-exports resolves to the child file that defines it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which top-level modules each top-level module may import (besides itself). Mirrors the
/// table under "Layers" in docs/ARCHITECTURE.md; `the_codemap_carries_the_same_table` keeps
/// the two equal.
const ALLOWED: &[(&str, &[&str])] = &[
    // shared
    ("model", &[]),
    ("protocol", &[]),
    ("config", &["protocol"]),
    ("net", &["config", "protocol"]),
    ("shutdown", &[]),
    ("logging", &["config"]),
    ("catalog_read", &["model", "net"]),
    // data plane
    ("rewriter", &["config", "model", "protocol"]),
    ("router", &["rewriter", SHARED]),
    ("proxy", &["router", "rewriter", SHARED]),
    // control plane
    ("control", &[SHARED]),
    // ops
    (
        "telemetry",
        &["control", "proxy", "router", "rewriter", SHARED],
    ),
    (
        "admin",
        &[
            "telemetry",
            "control",
            "proxy",
            "router",
            "rewriter",
            SHARED,
        ],
    ),
    // edge
    ("pg_cluster", &[]),
    (
        "cli",
        &[
            "admin",
            "telemetry",
            "control",
            "proxy",
            "router",
            "rewriter",
            SHARED,
        ],
    ),
    (
        "demo",
        &[
            "cli",
            "pg_cluster",
            "admin",
            "telemetry",
            "control",
            "proxy",
            "router",
            "rewriter",
            SHARED,
        ],
    ),
    ("main", &[ANY]),
    ("lib", &[ANY]),
];

/// Stands for every shared module: model, config, protocol, net, shutdown, logging,
/// catalog_read.
const SHARED: &str = "(shared)";
const SHARED_MODULES: &[&str] = &[
    "model",
    "config",
    "protocol",
    "net",
    "shutdown",
    "logging",
    "catalog_read",
];
/// Stands for every module.
const ANY: &str = "(any)";

fn allowed() -> BTreeMap<String, BTreeSet<String>> {
    let all: BTreeSet<String> = ALLOWED.iter().map(|(m, _)| m.to_string()).collect();
    ALLOWED
        .iter()
        .map(|(module, targets)| {
            let mut set = BTreeSet::new();
            for target in *targets {
                match *target {
                    SHARED => set.extend(SHARED_MODULES.iter().map(|m| m.to_string())),
                    ANY => set.extend(all.iter().cloned()),
                    other => {
                        set.insert(other.to_string());
                    }
                }
            }
            set.remove(*module);
            (module.to_string(), set)
        })
        .collect()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/`-relative path with forward slashes, e.g. `proxy/session/mod.rs`.
fn relative(path: &Path) -> String {
    path.strip_prefix(src())
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

/// The module path a file defines: `proxy/session/mod.rs` → [proxy, session].
fn module_of(file: &str) -> Vec<String> {
    let without = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = without.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] {
        parts.clear();
    }
    parts
}

/// The file defining a module path, if any.
fn file_of(module: &[String], files: &BTreeSet<String>) -> Option<String> {
    if module.is_empty() {
        return Some("lib.rs".into());
    }
    let base = module.join("/");
    [format!("{base}.rs"), format!("{base}/mod.rs")]
        .into_iter()
        .find(|candidate| files.contains(candidate))
}

/// The top-level module a file belongs to (`main` and `lib` for the crate roots).
fn top_of(file: &str) -> String {
    match file {
        "main.rs" => "main".into(),
        "lib.rs" => "lib".into(),
        _ => module_of(file)[0].clone(),
    }
}

/// One import: where it is, the path as written, and the absolute module path it names.
#[derive(Debug, Clone)]
struct Import {
    line: usize,
    written: String,
    path: Vec<String>,
    /// A `pub mod`/`pub use` line of a module root naming its own children.
    reexport_of_child: bool,
}

/// Code with comments and string contents blanked, line structure kept.
fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut previous = ' ';
    while let Some(c) = chars.next() {
        let after_word = previous.is_alphanumeric() || previous == '_';
        previous = c;
        match c {
            // A raw string: r"…", r#"…"#.
            'r' if !after_word && matches!(chars.peek(), Some('#') | Some('"')) => {
                let mut hashes = 0;
                while chars.peek() == Some(&'#') {
                    chars.next();
                    hashes += 1;
                }
                if chars.peek() != Some(&'"') {
                    out.push('r');
                    continue;
                }
                chars.next();
                out.push_str("\"\"");
                let mut run: Option<usize> = None;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    match (c, run) {
                        ('"', _) => run = Some(0),
                        ('#', Some(n)) => run = Some(n + 1),
                        _ => run = None,
                    }
                    if run == Some(hashes) {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '"' => {
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push('"');
            }
            // A char literal ('x', '\n', '"'); a lifetime ('a) is left alone.
            '\'' => {
                let rest: String = chars.clone().take(12).collect();
                let literal_len = if rest.starts_with('\\') {
                    rest.get(2..).and_then(|r| r.find('\'')).map(|i| i + 3)
                } else if rest.chars().nth(1) == Some('\'') {
                    Some(rest.chars().next().map_or(0, char::len_utf8) + 1)
                } else {
                    None
                };
                out.push('\'');
                if let Some(len) = literal_len {
                    let mut taken = 0;
                    while taken < len {
                        let c = chars.next().unwrap();
                        taken += c.len_utf8();
                    }
                    out.push('\'');
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Expands `a::{b, c::{d, self}}` into full paths.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree.trim_end_matches("::").to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|part| {
            expand(part).into_iter().map(move |tail| {
                if tail == "self" {
                    prefix.trim_end_matches("::").to_string()
                } else {
                    format!("{prefix}{tail}")
                }
            })
        })
        .collect()
}

/// Resolves a written path (`crate::…`, `super::…`, `self::…`, or `child::…` naming a child
/// module of `here`) against the module `here`.
fn absolute(
    written: &str,
    here: &[String],
    binary: bool,
    files: &BTreeSet<String>,
) -> Option<Vec<String>> {
    let written = written.split(" as ").next().unwrap();
    let mut segments: Vec<&str> = written.split("::").collect();
    let first = *segments.first()?;
    let child = || {
        let mut module = here.to_vec();
        module.push(first.to_string());
        file_of(&module, files).is_some()
    };
    let mut base: Vec<String> = match first {
        "crate" if !binary => Vec::new(),
        "viewgate" if binary => Vec::new(),
        "self" | "super" => here.to_vec(),
        _ if segments.len() > 1 && child() => here.to_vec(),
        _ => return None,
    };
    if matches!(first, "crate" | "viewgate" | "self") {
        segments.remove(0);
    }
    while segments.first() == Some(&"super") {
        base.pop()?;
        segments.remove(0);
    }
    base.extend(
        segments
            .into_iter()
            .filter(|s| *s != "*")
            .map(str::to_owned),
    );
    Some(base)
}

/// Every import of one file.
fn imports(file: &str, text: &str, files: &BTreeSet<String>) -> Vec<Import> {
    let binary = file == "main.rs";
    let module = module_of(file);
    let is_root = file.ends_with("mod.rs") || file == "lib.rs";
    let code = strip(text);
    let lines: Vec<&str> = code.lines().collect();
    // Inline modules (`mod tests {`): rustfmt closes them at the same indentation.
    let mut inline: Vec<(String, String)> = Vec::new(); // (indent, name)
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
        if let Some((open_indent, _)) = inline.last()
            && line.trim() == "}"
            && indent == *open_indent
        {
            inline.pop();
            i += 1;
            continue;
        }
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed
            .strip_prefix("mod ")
            .or_else(|| trimmed.strip_prefix("pub mod "))
            && rest.trim_end().ends_with('{')
        {
            inline.push((indent, rest.trim_end_matches('{').trim().to_string()));
            i += 1;
            continue;
        }
        let mut here = module.clone();
        here.extend(inline.iter().map(|(_, name)| name.clone()));
        let statement_start = trimmed
            .strip_prefix("pub use ")
            .map(|rest| (true, rest))
            .or_else(|| trimmed.strip_prefix("pub(crate) use ").map(|r| (false, r)))
            .or_else(|| trimmed.strip_prefix("use ").map(|r| (false, r)));
        if let Some((public, rest)) = statement_start {
            let first_line = i + 1;
            let mut statement = rest.to_string();
            while !statement.trim_end().ends_with(';') {
                i += 1;
                statement.push_str(lines[i]);
            }
            let statement = statement.trim_end().trim_end_matches(';');
            for path in expand(statement) {
                if let Some(resolved) = absolute(&path, &here, binary, files) {
                    let reexport_of_child = public
                        && is_root
                        && inline.is_empty()
                        && resolved.len() > module.len()
                        && resolved[..module.len()] == module[..];
                    found.push(Import {
                        line: first_line,
                        written: path,
                        path: resolved,
                        reexport_of_child,
                    });
                }
            }
            i += 1;
            continue;
        }
        // Paths used inline in code.
        let root = if binary { "viewgate::" } else { "crate::" };
        for start in [root, "super::"] {
            let mut from = 0;
            while let Some(at) = line[from..].find(start) {
                let at = from + at;
                let before = line[..at].chars().last();
                from = at + start.len();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let path: String = line[at..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                if let Some(resolved) = absolute(path.trim_end_matches(':'), &here, binary, files) {
                    found.push(Import {
                        line: i + 1,
                        written: path.trim_end_matches(':').to_string(),
                        path: resolved,
                        reexport_of_child: false,
                    });
                }
            }
        }
        i += 1;
    }
    found
}

/// The files that define a module's re-exported names: name → the path it re-exports.
type Reexports = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// The file an absolute path names: the deepest module file on it, followed through
/// re-exports (`pub use child::Name`) to the file that defines the name.
fn resolve(path: &[String], files: &BTreeSet<String>, reexports: &Reexports) -> Option<String> {
    let mut depth = path.len();
    while depth > 0 {
        if let Some(file) = file_of(&path[..depth], files) {
            if let Some(name) = path.get(depth)
                && let Some(target) = reexports.get(&file).and_then(|names| names.get(name))
                && target.as_slice() != path
            {
                return resolve(target, files, reexports).or(Some(file));
            }
            return Some(file);
        }
        depth -= 1;
    }
    None
}

struct Crate {
    files: BTreeSet<String>,
    imports: BTreeMap<String, Vec<Import>>,
    reexports: Reexports,
}

fn read_crate() -> Crate {
    let mut paths = Vec::new();
    rust_files(&src(), &mut paths);
    let files: BTreeSet<String> = paths.iter().map(|p| relative(p)).collect();
    let mut all = BTreeMap::new();
    let mut reexports: Reexports = BTreeMap::new();
    for path in &paths {
        let file = relative(path);
        let text = std::fs::read_to_string(path).unwrap();
        let found = imports(&file, &text, &files);
        for import in &found {
            if import.written.contains("::")
                && text
                    .lines()
                    .nth(import.line - 1)
                    .is_some_and(|l| l.trim_start().starts_with("pub use"))
                && let Some(name) = import.path.last()
            {
                reexports
                    .entry(file.clone())
                    .or_default()
                    .insert(name.clone(), import.path.clone());
            }
        }
        all.insert(file, found);
    }
    Crate {
        files,
        imports: all,
        reexports,
    }
}

#[test]
fn imports_point_down_the_layers() {
    let krate = read_crate();
    let allowed = allowed();
    let mut wrong = Vec::new();
    for (file, imports) in &krate.imports {
        let from = top_of(file);
        let may = allowed.get(&from).unwrap_or_else(|| {
            panic!("src/{file}: top-level module `{from}` is not in the layer table (tests/layers.rs ALLOWED, docs/ARCHITECTURE.md)")
        });
        for import in imports {
            let Some(to) = import.path.first() else {
                continue;
            };
            if *to == from || !allowed.contains_key(to) {
                continue;
            }
            if !may.contains(to) {
                wrong.push(format!(
                    "src/{file}:{}: `{from}` may not import `{to}` (`{}`); `{from}` may import only: {} (the layer table in docs/ARCHITECTURE.md)",
                    import.line,
                    import.written,
                    if may.is_empty() { "nothing of the crate".to_string() } else { may.iter().cloned().collect::<Vec<_>>().join(", ") }
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer rule:\n{}",
        wrong.join("\n")
    );
}

/// A cycle in `graph`, as the list of its nodes, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(cycle) = visit(next, graph, state, stack) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(cycle) = visit(node, graph, &mut state, &mut stack) {
                return Some(cycle);
            }
        }
    }
    None
}

/// file → (file it imports → first line importing it).
fn file_graph(krate: &Crate) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut graph: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (file, imports) in &krate.imports {
        let entry = graph.entry(file.clone()).or_default();
        for import in imports.iter().filter(|i| !i.reexport_of_child) {
            if let Some(target) = resolve(&import.path, &krate.files, &krate.reexports)
                && target != *file
            {
                entry.entry(target).or_insert(import.line);
            }
        }
    }
    graph
}

#[test]
fn no_cycle_between_modules_or_files() {
    let krate = read_crate();
    let files = file_graph(&krate);
    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, targets) in &files {
        let from = top_of(file);
        for target in targets.keys() {
            let to = top_of(target);
            if to != from && from != "lib" && to != "lib" {
                modules.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    if let Some(cycle) = find_cycle(&modules) {
        panic!("a cycle between top-level modules: {}", cycle.join(" → "));
    }
    let plain: BTreeMap<String, BTreeSet<String>> = files
        .iter()
        .map(|(file, targets)| (file.clone(), targets.keys().cloned().collect()))
        .collect();
    if let Some(cycle) = find_cycle(&plain) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|pair| {
                format!(
                    "src/{}:{} imports src/{}",
                    pair[0], files[&pair[0]][&pair[1]], pair[1]
                )
            })
            .collect();
        panic!("a cycle between files:\n{}", steps.join("\n"));
    }
}

/// The self-check of the resolver: paths the rest of this file relies on resolve as expected.
#[test]
fn the_resolver_reads_groups_and_reexports() {
    assert_eq!(
        expand("crate::{a::X, b::{Y, Z, self}}"),
        ["crate::a::X", "crate::b::Y", "crate::b::Z", "crate::b"]
    );
    let krate = read_crate();
    let resolve_written = |written: &str, here: &[&str]| {
        let here: Vec<String> = here.iter().map(|s| s.to_string()).collect();
        resolve(
            &absolute(written, &here, false, &krate.files).unwrap(),
            &krate.files,
            &krate.reexports,
        )
    };
    // A name a mod.rs re-exports resolves to the child that defines it.
    assert_eq!(
        resolve_written("crate::control::catalog::record_history", &["demo"]).as_deref(),
        Some("control/catalog/history.rs")
    );
    assert_eq!(
        resolve_written("super::Session", &["proxy", "session", "relay"]).as_deref(),
        Some("proxy/session/mod.rs")
    );
    assert_eq!(
        resolve_written("crate::model::Glob", &["router", "rules"]).as_deref(),
        Some("model/glob.rs")
    );
    // Multi-line braced imports are read whole.
    let sample = "use crate::{\n    config::Config,\n    model::{Glob, Cidr},\n};\nfn f() { crate::net::tls::x(); }\n";
    let found: Vec<(usize, String)> = imports("proxy/x.rs", sample, &krate.files)
        .into_iter()
        .map(|i| (i.line, i.path.join("::")))
        .collect();
    assert_eq!(
        found,
        [
            (1, "config::Config".to_string()),
            (1, "model::Glob".into()),
            (1, "model::Cidr".into()),
            (5, "net::tls::x".into())
        ]
    );
}

fn codemap() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md"))
        .unwrap()
}

#[test]
fn the_codemap_names_every_file_and_only_files_that_exist() {
    let map = codemap();
    let krate = read_crate();
    let mut missing: Vec<String> = Vec::new();
    for file in &krate.files {
        let path = format!("src/{file}");
        if !map.contains(&format!("`{path}`")) {
            missing.push(path);
        }
        if let Some((folder, _)) = file.rsplit_once('/') {
            let folder = format!("`src/{folder}/`");
            if !map.contains(&folder) && !missing.contains(&folder) {
                missing.push(folder);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md does not list: {}",
        missing.join(", ")
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for (at, _) in map.match_indices("src/") {
        if map[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '/') {
            continue;
        }
        let path: String = map[at..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-'))
            .collect();
        let path = path.trim_end_matches('.');
        if (path.ends_with(".rs") || path.ends_with('/')) && !root.join(path).exists() {
            stale.push(path.to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "docs/ARCHITECTURE.md names paths that do not exist: {}",
        stale.join(", ")
    );
}

#[test]
fn the_codemap_carries_the_same_table() {
    let map = codemap();
    let allowed = allowed();
    // Rows of the form "| `module` | `a`, `b` |" (or "| `module` | — |").
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in map.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let module = cells[1].trim_matches('`').to_string();
        if !allowed.contains_key(&module) {
            continue;
        }
        let mut targets = BTreeSet::new();
        for name in cells[2].split(',').map(|c| c.trim().trim_matches('`')) {
            match name {
                "" | "—" => {}
                "shared" => targets.extend(SHARED_MODULES.iter().map(|m| m.to_string())),
                "any" => targets.extend(allowed.keys().cloned()),
                other => {
                    targets.insert(other.to_string());
                }
            }
        }
        targets.remove(&module);
        documented.insert(module, targets);
    }
    assert_eq!(
        documented, allowed,
        "the layer table in docs/ARCHITECTURE.md differs from tests/layers.rs ALLOWED"
    );
}
