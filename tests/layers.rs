//! The layering check: no import cycle among the library's top-level modules.
//!
//! Reads `src/`, takes every `crate::x` path (also `crate::{x, y}` groups,
//! `$crate::x` in macros, and `super::` paths that climb to the crate root)
//! outside comments, strings and `#[cfg(test)]` items, resolves `x` to the
//! top-level module that defines it (a module declared in `lib.rs`, or a
//! name `lib.rs` re-exports from one), and fails when the resulting graph
//! of "module A names module B" edges has a cycle. `cargo test --test layers
//! -- --nocapture` prints the edges (ARCHITECTURE.md's diagram is drawn from
//! them).
//!
//! A file or item is one module's code; paths inside `#[cfg(test)]` code do
//! not count (tests may reach anywhere). `super::` depth is counted from the
//! file's place in `src/`; a non-test inline `mod x { .. }` using
//! `super::super::` would be misread (none does today).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Edges known to close a cycle today, each with why it is tolerated. Once
/// the reason is gone, remove the entry: the check then fails on it again.
/// An entry whose edge no longer exists fails the check (stale entry).
const ALLOWED: &[(&str, &str, &str)] = &[];

/// Names at the crate root that belong to no module (macros exported with
/// `#[macro_export]` live at the root, the prelude is a root module).
const ROOT_ITEMS: &[&str] = &["prelude", "gather"];

/// Replaces comments, string and char literals by spaces (keeping newlines
/// and byte offsets' meaning irrelevant: only the code's words matter).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c[i] == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&c, i) {
            // Raw string r"..." / r#"..."#: count the hashes.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|k| c.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(c: &[char], i: usize) -> bool {
    i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_')
}

/// Removes every `#[cfg(test)]` / `#[cfg(all(test, ..))]` item (up to its matching `}`, or its `;` or
/// `,`); returns the rest and the names of `#[cfg(test)] mod name;` files.
fn drop_test_items(code: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut test_mods = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(") {
        let Some(close) = rest[at..].find(")]") else {
            break;
        };
        let pred: String = rest[at + "#[cfg(".len()..at + close].split_whitespace().collect();
        let test_only =
            pred == "test" || (pred.starts_with("all(") && pred.contains("test,") && !pred.contains("not("));
        if !test_only {
            out.push_str(&rest[..at + close + 2]);
            rest = &rest[at + close + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let item = &rest[at + close + 2..];
        let b = item.as_bytes();
        let mut depth = 0i32;
        let mut end = item.len();
        for (k, &ch) in b.iter().enumerate() {
            match ch {
                b'{' | b'(' | b'[' => depth += 1,
                b'}' | b')' | b']' => {
                    depth -= 1;
                    if depth == 0 && ch == b'}' {
                        end = k + 1;
                        break;
                    }
                    if depth < 0 {
                        // The enclosing block ends: the item was its last.
                        end = k;
                        break;
                    }
                }
                b';' | b',' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        let words: Vec<&str> = item[..end]
            .split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        if item[..end].trim_end().ends_with(';') {
            if let Some(p) = words.iter().position(|w| *w == "mod") {
                if let Some(name) = words.get(p + 1) {
                    test_mods.push((*name).to_owned());
                }
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    (out, test_mods)
}

/// The identifiers right after `crate::` (or `$crate::`), with
/// `crate::{a, b::c}` giving `a` and `b`, plus `super::` chains that climb
/// `depth` levels or more (to the crate root).
fn root_names(code: &str, depth: usize) -> Vec<String> {
    let words: Vec<(usize, &str)> = tokens(code);
    let mut names = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let (_, w) = words[i];
        let mut j = None;
        if w == "crate" && words.get(i + 1).map(|t| t.1) == Some("::") {
            j = Some(i + 2);
        } else if w == "super" && (i == 0 || words[i - 1].1 != "::") {
            let mut k = i;
            let mut n = 0;
            while words.get(k).map(|t| t.1) == Some("super") && words.get(k + 1).map(|t| t.1) == Some("::") {
                n += 1;
                k += 2;
            }
            if n >= depth {
                j = Some(k);
            }
        }
        if let Some(j) = j {
            match words.get(j).map(|t| t.1) {
                Some("{") => {
                    // A group: the first word of each top-level item.
                    let mut d = 0;
                    let mut expect = true;
                    let mut k = j + 1;
                    while let Some(&(_, t)) = words.get(k) {
                        match t {
                            "{" => d += 1,
                            "}" if d == 0 => break,
                            "}" => d -= 1,
                            "," if d == 0 => expect = true,
                            _ if expect && d == 0 => {
                                names.push(t.to_owned());
                                expect = false;
                            }
                            _ => {}
                        }
                        k += 1;
                    }
                }
                Some(t) => names.push(t.to_owned()),
                None => {}
            }
        }
        i += 1;
    }
    names
}

/// Identifiers, `::` and single punctuation characters.
fn tokens(code: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_alphanumeric() || ch == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((s, &code[s..i]));
        } else if ch == b':' && b.get(i + 1) == Some(&b':') {
            out.push((i, "::"));
            i += 2;
        } else if ch.is_ascii_whitespace() || !ch.is_ascii() {
            i += 1;
        } else {
            out.push((i, &code[i..i + 1]));
            i += 1;
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Top-level modules (`mod x;` in lib.rs) and where each root re-export
/// (`pub use x::{A, B}` / `pub use x::A`) comes from.
fn crate_root(lib: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let code = strip(lib);
    let words = tokens(&code);
    let mut mods = BTreeSet::new();
    let mut reexports = BTreeMap::new();
    for (i, &(_, w)) in words.iter().enumerate() {
        if w == "mod" {
            if let (Some(name), Some(";")) = (words.get(i + 1).map(|t| t.1), words.get(i + 2).map(|t| t.1)) {
                mods.insert(name.to_owned());
            }
        }
    }
    // `pub use module::...;` statements at the root.
    let mut i = 0;
    while i + 2 < words.len() {
        if words[i].1 == "pub" && words[i + 1].1 == "use" && mods.contains(words[i + 2].1) {
            let module = words[i + 2].1.to_owned();
            let mut k = i + 3;
            while let Some(&(_, t)) = words.get(k) {
                if t == ";" {
                    break;
                }
                if t.chars().all(|ch| ch.is_alphanumeric() || ch == '_') && words.get(k + 1).map(|t| t.1) != Some("::")
                {
                    reexports.insert(t.to_owned(), module.clone());
                }
                k += 1;
            }
            i = k;
        }
        i += 1;
    }
    (mods, reexports)
}

/// The module graph: for each `(from, to)` edge, the files that make it.
fn edges() -> BTreeMap<(String, String), BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let (mods, reexports) = crate_root(&fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    rust_files(&src, &mut files);

    // Which files are `#[cfg(test)] mod x;` modules (skipped whole).
    let mut test_files = BTreeSet::new();
    let mut code_of = BTreeMap::new();
    for f in &files {
        let (code, test_mods) = drop_test_items(&strip(&fs::read_to_string(f).unwrap()));
        let dir = if f.file_name().is_some_and(|n| n == "mod.rs" || n == "lib.rs") {
            f.parent().unwrap().to_path_buf()
        } else {
            f.with_extension("")
        };
        for m in test_mods {
            test_files.insert(dir.join(format!("{m}.rs")));
            test_files.insert(dir.join(&m).join("mod.rs"));
        }
        code_of.insert(f.clone(), code);
    }

    let mut graph: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for (f, code) in &code_of {
        let rel = f.strip_prefix(&src).unwrap();
        let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.len() == 1 && parts[0] == "lib.rs" {
            continue;
        }
        if test_files.contains(f)
            || test_files
                .iter()
                .any(|t| t.parent().is_some_and(|d| f.starts_with(d) && t.ends_with("mod.rs")))
        {
            continue;
        }
        let from = parts[0].trim_end_matches(".rs").to_owned();
        assert!(
            mods.contains(&from),
            "{} belongs to no module declared in lib.rs",
            rel.display()
        );
        // How many `super::` reach the crate root from this file.
        let depth = parts.len() - usize::from(parts.last().is_some_and(|p| p == "mod.rs"));
        for name in root_names(code, depth) {
            let to = if mods.contains(&name) {
                name.clone()
            } else if let Some(m) = reexports.get(&name) {
                m.clone()
            } else if ROOT_ITEMS.contains(&name.as_str()) {
                continue;
            } else {
                unknown.push(format!("{}: crate::{name}", rel.display()));
                continue;
            };
            if to != from {
                graph
                    .entry((from.clone(), to))
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "paths the check cannot resolve to a module (add them to ROOT_ITEMS if they are root items):\n{}",
        unknown.join("\n")
    );
    graph
}

/// Strongly connected components with more than one module (the cycles).
fn cycles(nodes: &BTreeSet<String>, adj: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    // Reachability closure: a and b share a cycle iff each reaches the other.
    let reach = |start: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start.clone()];
        while let Some(n) = stack.pop() {
            for m in adj.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    stack.push(m.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> = nodes.iter().map(|n| (n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in nodes {
        if done.contains(n) || !reach[n].contains(n) {
            continue;
        }
        let scc: BTreeSet<String> = nodes
            .iter()
            .filter(|m| reach[n].contains(*m) && reach[*m].contains(n))
            .cloned()
            .collect();
        done.extend(scc.iter().cloned());
        out.push(scc);
    }
    out
}

#[test]
fn no_import_cycle_among_top_level_modules() {
    let graph = edges();
    println!("module edges (from -> to: files):");
    for ((a, b), files) in &graph {
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        println!("  {a} -> {b}: {}", files.join(", "));
    }

    let mut problems = Vec::new();
    for (a, b, _why) in ALLOWED {
        if !graph.contains_key(&(a.to_string(), b.to_string())) {
            problems.push(format!(
                "allow-listed edge {a} -> {b} no longer exists: remove it from ALLOWED"
            ));
        }
    }
    let allowed: BTreeSet<(String, String)> = ALLOWED.iter().map(|(a, b, _)| (a.to_string(), b.to_string())).collect();
    let mut nodes = BTreeSet::new();
    let mut adj: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in graph.keys() {
        nodes.insert(a.clone());
        nodes.insert(b.clone());
        if !allowed.contains(&(a.clone(), b.clone())) {
            adj.entry(a.clone()).or_default().insert(b.clone());
        }
    }
    for scc in cycles(&nodes, &adj) {
        let mut msg = format!("import cycle among {scc:?}; its edges:");
        for ((a, b), files) in &graph {
            if scc.contains(a) && scc.contains(b) && !allowed.contains(&(a.clone(), b.clone())) {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                msg.push_str(&format!("\n  {a} -> {b} ({})", files.join(", ")));
            }
        }
        problems.push(msg);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The parser itself: comments, strings, groups, `super::` and test items.
#[test]
fn the_path_parser_sees_code_only() {
    let src = r##"
        use crate::{a::X, b, c::{d, e}};
        // crate::commented
        /* crate::block /* nested */ crate::still_comment */
        let s = "crate::in_string"; let r = r#"crate::raw"#; let ch = '"'; let l: &'static str = "";
        fn f() { crate::f::g(); $crate::h::i; super::super::j::k; super::local; }
        #[cfg(test)]
        mod tests { use crate::only_tests; }
        #[cfg(all(test, feature = "x"))]
        mod more_tests;
        #[cfg(unix)]
        use crate::l;
    "##;
    let (code, test_mods) = drop_test_items(&strip(src));
    assert_eq!(test_mods, vec!["more_tests".to_owned()]);
    assert_eq!(root_names(&code, 2), vec!["a", "b", "c", "f", "h", "j", "l"]);
    // From a file one level deep, a single `super::` is the crate root.
    assert_eq!(root_names("super::x::y", 1), vec!["x"]);
}

/// The cycle finder itself: a three-module loop is found, a module that
/// only points into it is not part of it, and an acyclic graph passes.
#[test]
fn the_cycle_finder_reports_exactly_the_modules_of_a_cycle() {
    let graph = |edges: &[(&str, &str)]| {
        let mut nodes = BTreeSet::new();
        let mut adj: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            nodes.insert(a.to_string());
            nodes.insert(b.to_string());
            adj.entry(a.to_string()).or_default().insert(b.to_string());
        }
        cycles(&nodes, &adj)
    };
    let found = graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("d", "a"), ("c", "e")]);
    let want: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found, vec![want]);
    assert!(graph(&[("a", "b"), ("b", "c"), ("a", "c")]).is_empty());
}
