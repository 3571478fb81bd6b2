//! The one-way layering of `src/` (ARCHITECTURE.md, "Layers"), kept by a test in the manner of
//! rust-analyzer's tidy tests: every `crate::` path in `src/**/*.rs` (including `use crate::{…}`
//! groups and `super::` paths that climb to the crate root) must name a module of a strictly
//! lower layer than the file's own top-level module, or that module itself.
//!
//! [`LAYERS`] is the one table; ARCHITECTURE.md shows the same. A new top-level module must be
//! added to it (the test fails on a module it does not know).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom first. A module may use the modules of earlier rows only (and itself).
const LAYERS: &[&[&str]] = &[
    // Pure or I/O through `Fs`; every bound; recording primitives the low layers call.
    &["limits"],
    &["config", "recorder", "budget"],
    &["storage"],
    &["protocol", "catalog"],
    // Shards, inboxes, run_on, timers, typed slots for shard-local services. And the client
    // of the tools, which needs no broker module at all.
    &["runtime", "client"],
    // Services, each on the runtime and the bottom; the lower one owns the trait two talk through.
    &["group"],
    &["cluster"],
    // Kafka handlers on top of the services; the exporter reads them all at scrape.
    &["kafka"],
    &["metrics"],
    // The process: listeners, connections; the tools.
    &["server"],
    &["bench"],
    &["cli"],
    &["bin"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of one line: comments (line and trailing) removed, string literals blanked.
fn code_of(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    in_str = false;
                    out.push('"');
                }
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push('"');
            }
            '/' if chars.peek() == Some(&'/') => break,
            _ => out.push(c),
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules that `code` names through `crate::` (and `crate::{a, b::c}` groups).
fn crate_paths(code: &str, out: &mut BTreeSet<String>) {
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        // `crate::` must not be the tail of a longer identifier (`my_crate::`).
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: split at depth-0 commas.
            let mut depth = 0;
            let mut start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.insert(ident_at(group[start..].trim_start()).to_string());
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident_at(group[start..].trim_start()).to_string());
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident_at(rest).to_string());
        }
    }
}

/// `super::` paths that climb out of the file's top-level module (to the crate root) name a
/// top-level module too. `depth` is how many `super`s reach the root from this file.
fn super_paths(code: &str, depth: usize, out: &mut BTreeSet<String>) {
    let climb = "super::".repeat(depth);
    let mut rest = code;
    while let Some(i) = rest.find(&climb) {
        rest = &rest[i + climb.len()..];
        // Only top-level module names count: inside an inline module (`mod tests`) the same
        // climb lands one level lower, on a sibling module of the file's own.
        let name = ident_at(rest);
        if !rest.starts_with("super::") && layer_of(name).is_some() {
            out.insert(name.to_string());
        }
    }
}

#[test]
fn imports_only_go_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut unknown = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts == ["lib.rs"] {
            continue; // the module list itself
        }
        let module = parts[0].trim_end_matches(".rs").to_string();
        // Directories below the crate root between this file and it: src/a.rs and src/a/mod.rs
        // are 1 `super` from the root, src/a/b.rs 2 (its own module a::b), src/a/b/mod.rs 2.
        let depth = parts.len() - usize::from(parts.last().is_some_and(|f| f == "mod.rs"));
        let Some(own) = layer_of(&module) else {
            unknown.insert(module.clone());
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = code_of(line);
            let mut used = BTreeSet::new();
            crate_paths(&code, &mut used);
            super_paths(&code, depth, &mut used);
            for target in used {
                if target == module || target.is_empty() || target == "self" {
                    continue;
                }
                match layer_of(&target) {
                    Some(t) if t < own => {}
                    Some(_) => violations.push(format!("src/{}:{}: {module} uses {target}: {}", rel.display(), n + 1, line.trim())),
                    None if target.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => {} // a re-export at the root
                    None => {
                        unknown.insert(target);
                    }
                }
            }
        }
    }
    assert!(unknown.is_empty(), "modules missing from LAYERS in tests/it/layers.rs: {unknown:?}");
    assert!(
        violations.is_empty(),
        "{} imports go up or across the layers (tests/it/layers.rs, ARCHITECTURE.md \"Layers\"):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

#[test]
fn the_scanner_sees_every_form_of_path() {
    let mut got = BTreeSet::new();
    crate_paths("use crate::{limits, storage::{Fs, batch}, runtime::Shard};", &mut got);
    crate_paths("let x = crate::metrics::inbox_full(); my_crate::nope();", &mut got);
    super_paths("use super::super::kafka::error;", 2, &mut got);
    super_paths("use super::sibling;", 2, &mut got);
    let want: BTreeSet<String> = ["limits", "storage", "runtime", "metrics", "kafka"].iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want);
    assert_eq!(code_of(r#"let s = "crate::fake"; // crate::comment"#), r#"let s = ""; "#);
}
