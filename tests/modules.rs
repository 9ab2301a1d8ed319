//! The top-level modules of `agent/` form no import cycle: each stage depends on the ones
//! below it (see docs/architecture.md), so a module can be read, tested and replaced
//! without the ones above it. Paths are read from the source (`crate::x` outside comments
//! and test modules), so a new cycle fails here with the lines that make it.

#[path = "common/root.rs"]
mod root;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Whether a `#[cfg(test)] mod …` starts at line `i` (test modules come last in a file).
fn test_module_at(lines: &[&str], i: usize) -> bool {
    lines[i].trim_start().starts_with("#[cfg(test)]")
        && lines[i + 1..]
            .iter()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim_start().starts_with("mod "))
}

/// For each top-level module, the other top-level modules it names, with one place each.
fn graph(root: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut modules = BTreeMap::new();
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if ["lib", "main", "web"].contains(&name.as_str())
            || (p.is_file() && p.extension().is_none_or(|x| x != "rs"))
        {
            continue;
        }
        let mut files = Vec::new();
        if p.is_dir() {
            sources(&p, &mut files);
        } else {
            files.push(p.clone());
        }
        let mut deps: BTreeMap<String, String> = BTreeMap::new();
        for f in files {
            if f.file_name().is_some_and(|n| n == "tests.rs") {
                continue; // a test module of its parent
            }
            let text = std::fs::read_to_string(&f).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let t = line.trim_start();
                if test_module_at(&lines, i) {
                    break; // test modules come last in a file
                }
                if t.starts_with("//") {
                    continue;
                }
                let mut rest: &str = line;
                while let Some(at) = rest.find("crate::") {
                    rest = &rest[at + 7..];
                    let dep: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if dep != name && !dep.is_empty() {
                        deps.entry(dep)
                            .or_insert_with(|| format!("{}:{}", f.display(), i + 1));
                    }
                }
            }
        }
        modules.insert(name, deps);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    for deps in modules.values_mut() {
        deps.retain(|d, _| names.contains(d));
    }
    modules
}

/// A cycle through `start`, if there is one (depth-first search).
fn cycle_from(g: &BTreeMap<String, BTreeMap<String, String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        g: &BTreeMap<String, BTreeMap<String, String>>,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in g[at].keys() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(g, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(g, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let root = root::repo().join("agent");
    let g = graph(&root);
    assert!(g.len() > 15, "modules found: {:?}", g.keys());
    // The checker sees real dependencies: the daemon wires the stages.
    assert!(g["daemon"].contains_key("stages"), "{:?}", g["daemon"]);
    assert!(g["http"].contains_key("status"), "{:?}", g["http"]);
    let mut cycles = Vec::new();
    for m in g.keys() {
        if let Some(c) = cycle_from(&g, m) {
            let steps: Vec<String> = c
                .iter()
                .zip(c.iter().cycle().skip(1))
                .map(|(a, b)| format!("{a} -> {b} ({})", g[a][b]))
                .collect();
            cycles.push(steps.join("; "));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_agent_module_is_gone_and_no_function_is_long() {
    let root = root::repo().join("agent");
    assert!(!root.join("agent.rs").exists());
    // Every function in agent/ at most 80 lines, declarative tables excepted.
    let mut files = Vec::new();
    sources(&root, &mut files);
    let tables = ["int_ranges", "describe"];
    let mut long = Vec::new();
    let mut seen = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            if test_module_at(&lines, i) {
                break;
            }
            let l = lines[i];
            let t = l.trim_start();
            let indent = l.len() - t.len();
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "pub(super) fn ",
                "async fn ",
            ]
            .iter()
            .any(|p| t.starts_with(p));
            if is_fn && !t.ends_with(';') && !t.ends_with('}') {
                seen += 1;
                let name: String = t[t.find("fn ").unwrap() + 3..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let close = format!("{}}}", " ".repeat(indent));
                let end = (i..lines.len())
                    .find(|&j| lines[j].starts_with(&close) && lines[j].trim() == "}")
                    .unwrap_or(i);
                let n = end - i + 1;
                if n > 80 && !tables.contains(&name.as_str()) {
                    long.push(format!("{}: {name} is {n} lines", f.display()));
                }
                i = end;
            }
            i += 1;
        }
    }
    assert!(seen > 500, "functions found: {seen}");
    assert!(long.is_empty(), "{}", long.join("\n"));
}
